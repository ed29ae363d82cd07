"""Train the small runs the dashboard's screenshots show, from the packaged sample only (no downloads):

    .venv/bin/python scripts/ui_demo_runs.py /tmp/ui-demo

two classification runs (for compare), a generation run (SmolLM2 + LoRA), a staged run (domain-adaptive
pre-training, then classification) and a continual run (two experiences). About 6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import sys
from importlib import resources
from pathlib import Path

from tunesmith.pipeline import run

SAMPLE = Path(str(resources.files("tunesmith") / "samples" / "comment_sentiment"))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "_data"
    data.mkdir(exist_ok=True)
    rows = list(csv.DictReader((SAMPLE / "train.csv").open(encoding="utf-8")))
    test = list(csv.DictReader((SAMPLE / "test.csv").open(encoding="utf-8")))
    _csv(data / "first.csv", rows[:500])
    _csv(data / "second.csv", rows[500:])
    _csv(data / "test.csv", test)
    _chat(data / "chat_train.jsonl", rows[:160])
    _chat(data / "chat_test.jsonl", test[:40])
    classification = {
        "task": "classification",
        "model": {"name": "minilm-l6"},
        "data": {"train": str(SAMPLE / "train.csv"), "test": str(SAMPLE / "test.csv")},
        "train": {"epochs": 3},
    }
    jobs = {
        "comment-sentiment": classification,
        "comment-sentiment-lr5e-5": {**classification, "train": {"epochs": 3, "lr": 5e-5}},
        "sentiment-answers": {
            "task": "generation",
            "model": {"name": "smollm2-135m-instruct"},
            "data": {"train": str(data / "chat_train.jsonl"), "test": str(data / "chat_test.jsonl")},
            "method": {"name": "supervised", "tuning": "lora"},
            "train": {"epochs": 1, "batch_size": 8, "lr": 5e-4, "max_length": 128},
            "eval": {"max_samples": 12, "max_new_tokens": 8},
        },
        "adapted-sentiment": {
            **classification,
            "train": {"epochs": 2},
            "stages": [
                {
                    "name": "comments-mlm",
                    "method": {"name": "domain_adaptation", "corpus": [str(SAMPLE / "train.csv")]},
                    "train": {"epochs": 1},
                },
                {"name": "sentiment"},
            ],
        },
        "sentiment-continual": {
            "task": "classification",
            "model": {"name": "minilm-l6"},
            "method": {"name": "continual", "strategy": ["replay"]},
            "train": {"epochs": 2},
            "experiences": [
                {"name": "first-500", "data": {"train": str(data / "first.csv"), "test": str(data / "test.csv")}},
                {"name": "next-500", "data": {"train": str(data / "second.csv"), "test": str(data / "test.csv")}},
            ],
        },
    }
    for name, recipe in jobs.items():
        if not (out / name / "metrics.json").is_file():
            run(recipe, output_dir=out / name, overwrite=True)


def _csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def _chat(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            messages = [
                {"role": "user", "content": f"Is this comment positive or negative?\n\n{row['text']}"},
                {"role": "assistant", "content": row["label"]},
            ]
            handle.write(json.dumps({"messages": messages}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ui-demo"))
