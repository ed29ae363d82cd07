"""Entities in documents longer than max_length: one read cut at max_length vs overlapping windows of words.

    python benchmarks/long_documents.py [--set medical_ner_bc5cdr] [--max-train 1000] [--join 12] [--seed 42]
    python benchmarks/long_documents.py --train-documents ...   # training sentences joined into documents too

Trains MiniLM on a seeded sample of an entity set's sentences (max_length 128, `auto` settings otherwise), then
tags the test sentences three ways with the same model: each sentence alone (the reference), and joined in
order into documents of `--join` sentences, read once and cut at max_length (how a single read tags a long
document) or read in overlapping windows of words (what `predict`, `eval` and serving do). Entity F1 of each,
and how many of the documents' words lie past the cut. `--train-documents` joins the training sentences into
documents the same way and trains twice, on their windows (what a run does) and on one cut read of each (how it
trained before), each model then tagging the test documents in windows.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults import SHARED, cpu_name  # noqa: E402


def sample(name: str, split: str, cap: int | None, seed: int, tmp: Path, join: int = 0) -> str:
    """A seeded sample of a split's sentences; with `join`, a seeded run of consecutive sentences joined `join` to a
    document (as many documents as the cap's sentences make)."""
    lines = [x for x in (SHARED / name / f"{split}.jsonl").read_text().splitlines() if x.strip()]
    if join and cap:
        start = random.Random(seed).randrange(0, max(1, len(lines) - cap))
        rows = [json.loads(x) for x in lines[start : start + cap]]
        groups = [rows[i : i + join] for i in range(0, len(rows), join)]
        lines = [
            json.dumps({"tokens": [w for r in g for w in r["tokens"]], "tags": [t for r in g for t in r["tags"]]})
            for g in groups
        ]
    elif cap:
        random.Random(seed).shuffle(lines)
        lines = lines[:cap]
    path = tmp / f"{split}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def train(args, tmp: Path, join: int, name: str):
    """A tuned MiniLM entity model on a seeded sample of the set (training sentences joined `join` to a document
    when `join`), max_length 128, `auto` settings otherwise; its predictor."""
    import tunesmith
    from tunesmith.predict import Predictor

    data = {
        "train": sample(args.set, "train", args.max_train, args.seed, tmp, join),
        "validation": sample(args.set, "validation", 250, args.seed, tmp, join),
    }
    recipe = {
        "task": "token_classification",
        "model": "minilm-l6",
        "data": data,
        "train": {"seed": args.seed, "max_length": 128},
        "eval": {"baseline": "none"},
    }
    return Predictor.load(tunesmith.run(recipe, output_dir=tmp / name).run_dir)


def test_documents(args) -> tuple[list[dict], list[list[str]], list[list[str]]]:
    """(the test sentences, their words and their tags joined in order `--join` to a document)."""
    test = [json.loads(x) for x in (SHARED / args.set / "test.jsonl").read_text().splitlines() if x.strip()]
    groups = [test[i : i + args.join] for i in range(0, len(test), args.join)]
    return (
        test,
        [[w for s in g for w in s["tokens"]] for g in groups],
        [[t for s in g for t in s["tags"]] for g in groups],
    )


def documents_trained(args, tmp: Path, windows: bool) -> float:
    """Entity F1 on the test documents (read in windows) of a model trained on joined training documents, as
    overlapping windows (`windows`) or as one read cut at max_length each."""
    from tunesmith.tasks import token_classification as tc

    keep = tc.split_long
    if not windows:
        tc.split_long = lambda tokenizer, split, firsts, max_length: (split, 0)
    try:
        predictor = train(args, tmp, args.join, f"run-{'windows' if windows else 'cut'}")
    finally:
        tc.split_long = keep
    _, docs, gold = test_documents(args)
    return tc.ner_metrics(gold, predictor.predict_tags(docs), False)["f1"]


def training(args) -> dict:
    """Trained on joined documents: in windows (what a run does) vs one cut read each (how it trained before)."""
    with tempfile.TemporaryDirectory() as folder:
        return {
            "training_sentences": args.max_train,
            "join": args.join,
            "f1_trained_on_windows": round(documents_trained(args, Path(folder), True), 4),
            "f1_trained_on_cut_reads": round(documents_trained(args, Path(folder), False), 4),
        }


def reading(args) -> dict:
    """One model trained on sentences, tagging each test sentence alone, and the joined documents read once (cut
    at max_length) or in windows."""
    from tunesmith.tasks import token_classification as tc

    with tempfile.TemporaryDirectory() as folder:
        predictor = train(args, Path(folder), 0, "run")
        test, docs, gold_docs = test_documents(args)
        alone = tc.ner_metrics([s["tags"] for s in test], predictor.predict_tags([s["tokens"] for s in test]), False)
        windowed = tc.ner_metrics(gold_docs, predictor.predict_tags(docs), False)
        keep = tc.long_sentence_scores
        tc.long_sentence_scores = lambda model, tok, sentences, scores, *rest: scores  # one read, cut at max_length
        try:
            once = tc.ner_metrics(gold_docs, predictor.predict_tags(docs), False)
        finally:
            tc.long_sentence_scores = keep
        _, firsts, cut = tc.encode(predictor.tokenizer, docs, None, predictor.labels, 128)
    return {
        "documents": len(docs),
        "words_per_document": round(sum(len(d) for d in docs) / len(docs), 1),
        "documents_cut": cut,
        "words_past_the_cut": round(sum(p < 0 for f in firsts for p in f) / sum(len(d) for d in docs), 3),
        "f1_sentences_alone": round(alone["f1"], 4),
        "f1_documents_read_once": round(once["f1"], 4),
        "f1_documents_windowed": round(windowed["f1"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", default="medical_ner_bc5cdr")
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--join", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-documents", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = training(args) if args.train_documents else reading(args)
    result = {"cpu": cpu_name(), "set": args.set, **figures}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
