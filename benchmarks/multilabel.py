"""Multi-label classification, MiniLM: tunesmith's defaults vs a plain Hugging Face Trainer script written from
the docs (problem_type="multi_label_classification", default TrainingArguments, a 0.5 threshold), side by side
on the same rows, scored on the same test file. Prints micro/macro F1 of base (tunesmith's one-vs-rest probe),
tunesmith and the Trainer, and samples/s of both.

    python benchmarks/multilabel.py [--sets goemotions_multilabel medical_hoc_multilabel] [--samples 10000]
        [--epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def split_labels(cell) -> list[str]:
    return [part for part in str(cell).split("|") if part] if isinstance(cell, str) else []


def run_tunesmith(train: Path, name: str, epochs: int, seed: int, out: Path) -> dict:
    import tunesmith

    recipe = {
        "model": "minilm-l6",
        "train": {"epochs": epochs, "seed": seed},
        "data": {
            "train": str(train),
            "validation": str(SHARED / name / "validation.csv"),
            "test": str(SHARED / name / "test.csv"),
            "label_column": "labels",
            "label_separator": "|",
        },
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    keys = ("f1_micro", "f1_macro", "subset_accuracy")
    return {
        "base": {k: m["base"][k] for k in keys},
        "tuned": {k: m["tuned"][k] for k in keys},
        "samples_per_s": m["train"]["samples_per_s"],
        "train_s": m["train"]["runtime_s"],
        "epochs_run": m["train"]["epochs"],
    }


def run_hf_trainer(train: pd.DataFrame, name: str, epochs: int, seed: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunesmith.models.loading import resolve_weights
    from tunesmith.tasks.multilabel import multilabel_metrics

    path = resolve_weights("minilm-l6")
    labels = sorted({label for cell in train["labels"] for label in split_labels(cell)})
    index = {label: i for i, label in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)

    def encode(frame: pd.DataFrame) -> Dataset:
        hot = np.zeros((len(frame), len(labels)), dtype=np.float32)
        for row, cell in enumerate(frame["labels"]):
            for label in split_labels(cell):
                if label in index:
                    hot[row, index[label]] = 1.0
        data = Dataset.from_dict({"text": frame["text"].tolist(), "labels": hot.tolist()})
        return data.map(lambda b: tok(b["text"], truncation=True), batched=True, remove_columns=["text"])

    test = pd.read_csv(SHARED / name / "test.csv", keep_default_na=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), problem_type="multi_label_classification"
    )
    args = TrainingArguments(output_dir=str(out), num_train_epochs=epochs, seed=seed, report_to=[], save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tok))
    result = trainer.train()
    test_ds = encode(test)
    logits = trainer.predict(test_ds).predictions
    predicted = torch.sigmoid(torch.tensor(logits)).numpy() >= 0.5
    metrics = multilabel_metrics(np.asarray(test_ds["labels"]), predicted, labels, detail=False)
    return {
        "tuned": {k: metrics[k] for k in ("f1_micro", "f1_macro", "subset_accuracy")},
        "samples_per_s": result.metrics["train_samples_per_second"],
        "train_s": result.metrics["train_runtime"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", nargs="*", default=["goemotions_multilabel", "medical_hoc_multilabel"])
    parser.add_argument("--samples", type=int, default=10000, help="seeded sample of each training file (at most)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets:
            frame = pd.read_csv(SHARED / name / "train.csv", keep_default_na=False)
            frame = frame.sample(n=min(args.samples, len(frame)), random_state=args.seed)
            frame.to_csv(tmp / f"{name}.csv", index=False)
            ours = run_tunesmith(tmp / f"{name}.csv", name, args.epochs, args.seed, tmp / f"ts-{name}")
            theirs = run_hf_trainer(frame, name, args.epochs, args.seed, tmp / f"hf-{name}")
            results[name] = {
                "rows": len(frame),
                "tunesmith": ours,
                "hf_trainer": theirs,
                "speed_ratio": ours["samples_per_s"] / theirs["samples_per_s"],
            }
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
