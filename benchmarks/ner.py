"""Named entities, MiniLM: tunesmith's defaults vs a plain Hugging Face Trainer token-classification script written
from the docs (DataCollatorForTokenClassification, default TrainingArguments, labels on each word's first
sub-token), the same epochs, side by side; entity F1 (seqeval, strict IOB2) on each test file, the base probe,
and training samples/s of both.

    python benchmarks/ner.py [--sets medical_ner_ncbi_disease medical_ner_bc5cdr financial_ner_finer_ord]
        [--epochs 3] [--samples N] [--seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_tunesmith(name: str, train: Path, epochs: int, seed: int, out: Path) -> dict:
    import tunesmith

    recipe = {
        "task": "token_classification",
        "model": "minilm-l6",
        "train": {"epochs": epochs, "seed": seed, "max_length": 128},
        "data": {
            "train": str(train),
            "validation": str(SHARED / name / "validation.jsonl"),
            "test": str(SHARED / name / "test.jsonl"),
        },
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    return {
        "base_f1": m["base"]["f1"],
        "f1": m["tuned"]["f1"],
        "samples_per_s": m["train"]["samples_per_s"],
        "train_s": m["train"]["runtime_s"],
        "epochs_run": m["train"]["epochs"],
    }


def run_hf_trainer(name: str, rows: list[dict], epochs: int, seed: int, out: Path) -> dict:
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from tunesmith.models.loading import resolve_weights
    from tunesmith.tasks.token_classification import ner_metrics

    path = resolve_weights("minilm-l6")
    labels = ["O"] + sorted({t for r in rows for t in r["tags"]} - {"O"})
    index = {label: i for i, label in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)

    def align(batch):  # the docs' recipe: the tag on the first sub-token of each word, -100 elsewhere
        enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=128)
        enc["labels"] = []
        for i, tags in enumerate(batch["tags"]):
            previous, row = None, []
            for w in enc.word_ids(i):
                row.append(-100 if w is None or w == previous else index.get(tags[w], 0))
                previous = w
            enc["labels"].append(row)
        return enc

    test = read(SHARED / name / "test.jsonl")
    encode = lambda items: Dataset.from_list(items).map(align, batched=True, remove_columns=["tokens", "tags"])  # noqa: E731
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index
    )
    args = TrainingArguments(output_dir=str(out), num_train_epochs=epochs, seed=seed, report_to=[], save_strategy="no")
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode([{"tokens": r["tokens"], "tags": r["tags"]} for r in rows]),
        data_collator=DataCollatorForTokenClassification(tok),
    )
    result = trainer.train()
    test_ds = encode([{"tokens": r["tokens"], "tags": r["tags"]} for r in test])
    logits = trainer.predict(test_ds).predictions
    predicted = []
    for row, sent_logits, sent_labels in zip(test, logits, test_ds["labels"]):
        tags = [labels[int(np.argmax(sent_logits[pos]))] for pos, lab in enumerate(sent_labels) if lab != -100]
        predicted.append(tags + ["O"] * (len(row["tags"]) - len(tags)))  # words past 128 sub-tokens: O
    return {
        "f1": ner_metrics([r["tags"] for r in test], predicted, detail=False)["f1"],
        "samples_per_s": result.metrics["train_samples_per_second"],
        "train_s": result.metrics["train_runtime"],
    }


def medians(runs: list[dict]) -> dict:
    """Median F1 and samples/s of each side over the seeds, and the ratio of the median speeds."""
    mid = lambda side, key: statistics.median(r[side][key] for r in runs)  # noqa: E731
    out = {side: {key: mid(side, key) for key in ("f1", "samples_per_s")} for side in ("tunesmith", "hf_trainer")}
    out["tunesmith"]["base_f1"] = mid("tunesmith", "base_f1")
    out["speed_ratio"] = out["tunesmith"]["samples_per_s"] / out["hf_trainer"]["samples_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sets", nargs="*", default=["medical_ner_ncbi_disease", "medical_ner_bc5cdr", "financial_ner_finer_ord"]
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=None, help="seeded sample of each training file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=1, help="repeats with seeds seed, seed+1, ...; medians reported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets:
            rows = read(SHARED / name / "train.jsonl")
            if args.samples and args.samples < len(rows):
                rows = random.Random(args.seed).sample(rows, args.samples)
            train = tmp / f"{name}.jsonl"
            train.write_text("\n".join(json.dumps({"tokens": r["tokens"], "tags": r["tags"]}) for r in rows))
            runs = []
            for seed in range(args.seed, args.seed + args.seeds):  # each seed: both sides, one after the other
                ours = run_tunesmith(name, train, args.epochs, seed, tmp / f"ts-{name}-{seed}")
                theirs = run_hf_trainer(name, rows, args.epochs, seed, tmp / f"hf-{name}-{seed}")
                runs.append({"seed": seed, "tunesmith": ours, "hf_trainer": theirs})
                print(name, json.dumps(runs[-1]), flush=True)
            results[name] = {"sentences": len(rows), "runs": runs, **medians(runs)}
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
