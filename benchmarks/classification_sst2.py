"""MiniLM on sst2 (8,000 seeded training examples, 1 epoch): tunesmith vs a plain HF Trainer script.

    python benchmarks/classification_sst2.py [--samples 8000] [--repeats 1] [--json out.json]

All runs see the same rows and are evaluated on sst2's validation file. Prints accuracies,
samples/s and the ratios to the Trainer (medians over --repeats). Variants: tunesmith defaults
(which freeze the bottom third of the layers, 2 of MiniLM's 6), and tunesmith training every layer
(method.freeze_layers=0), to show what that default trades.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def sample_rows(n: int, seed: int) -> pd.DataFrame:
    return pd.read_csv(DATA / "train.csv").sample(n=n, random_state=seed)


def run_tunesmith(train_csv: Path, seed: int, out: Path, overrides: list[str]) -> dict:
    import tunesmith

    recipe = {
        "model": {"name": "minilm-l6"},
        "data": {"train": str(train_csv), "validation": str(DATA / "validation.csv")},
        "train": {"epochs": 1, "seed": seed},
        "eval": {"baseline": "none"},
    }
    metrics = tunesmith.run(tunesmith.load_recipe(recipe, overrides), output_dir=out, overwrite=True).metrics
    train = metrics["train"]
    # the probe that starts the head (method.head_init) is training work the Trainer does not do: count it
    seconds = train["runtime_s"] + train.get("head_init_s", 0.0)
    return {
        "accuracy": metrics["tuned"]["accuracy"],
        "samples_per_s": train["samples_per_s"] * train["runtime_s"] / seconds,
    }


def run_hf_trainer(train_rows: pd.DataFrame, seed: int, out: Path, **training_args) -> dict:
    """What a user writes from the HF docs: default TrainingArguments (fp32, batch 8) unless `training_args`."""
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunesmith.models.loading import resolve_weights

    path = resolve_weights("minilm-l6")
    labels = sorted(train_rows.label.unique())
    to_id = {l: i for i, l in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)
    enc = lambda frame: Dataset.from_dict({"text": frame.text.tolist(), "label": [to_id[l] for l in frame.label]}).map(  # noqa: E731
        lambda b: tok(b["text"], truncation=True), batched=True
    )
    train_ds, val_ds = enc(train_rows), enc(pd.read_csv(DATA / "validation.csv"))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=1, seed=seed, report_to=[], save_strategy="no", **training_args
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
    )
    result = trainer.train()
    return {
        "accuracy": trainer.evaluate()["eval_accuracy"],
        "samples_per_s": result.metrics["train_samples_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--defaults-only", action="store_true", help="skip the all-layers variant")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=KEY=VALUE,...",
        help="extra tunesmith run with --set overrides, e.g. head=train.head_lr=1e-3",
    )
    parser.add_argument("--variants-only", action="store_true", help="run only the --variant runs (and the baseline)")
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    args = parser.parse_args()
    variants = {"tunesmith": [], "tunesmith_all_layers": ["method.freeze_layers=0"]}
    if args.defaults_only:
        del variants["tunesmith_all_layers"]
    if args.variants_only:
        variants.clear()
    for spec in args.variant:
        name, _, sets = spec.partition("=")
        variants[name] = sets.split(",")
    results = {name: [] for name in (*variants, "hf_trainer")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.repeats):
            seed = args.first_seed + r
            rows = sample_rows(args.samples, seed)
            rows.to_csv(tmp / "train.csv", index=False)
            for name, overrides in variants.items():
                results[name].append(run_tunesmith(tmp / "train.csv", seed, tmp / name, overrides))
                print(name, results[name][-1], file=sys.stderr)
            if not args.skip_baseline:
                results["hf_trainer"].append(run_hf_trainer(rows, seed, tmp / "hf"))
                print("hf_trainer", results["hf_trainer"][-1], file=sys.stderr)
    summary = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("accuracy", "samples_per_s")}
        for name, runs in results.items()
        if runs
    }
    if "hf_trainer" in summary:
        base = summary["hf_trainer"]
        for name in variants:
            summary[name]["ratio_samples_per_s_vs_hf"] = summary[name]["samples_per_s"] / base["samples_per_s"]
            summary[name]["accuracy_gap_points_vs_hf"] = 100 * (summary[name]["accuracy"] - base["accuracy"])
    summary["repeats"], summary["samples"] = args.repeats, args.samples
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    if args.publish:
        publish_table(results, summary, args)


def publish_table(results: dict, summary: dict, args) -> None:
    """The README's table: accuracy per seed, median and mean ± sd, the speed ratio to the Trainer, and what the
    figures say against the bars (accuracy >= 0.85 and within 0.5 point of the Trainer, >= 3x its samples/s)."""
    from results import publish

    if "hf_trainer" not in summary:
        raise SystemExit("--publish needs the baseline: drop --skip-baseline")
    names = {"hf_trainer": "HF `Trainer`, defaults", "tunesmith": "tunesmith, defaults"}
    base = summary["hf_trainer"]
    rows, spread = [], {}
    for name, runs in results.items():
        if not runs:
            continue
        accs = [r["accuracy"] for r in runs]
        spread[name] = (statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0)
        ratio = summary[name]["samples_per_s"] / base["samples_per_s"]
        gap = 100 * (summary[name]["accuracy"] - base["accuracy"])
        rows.append(
            [
                names.get(name, f"tunesmith, {name}"),
                " / ".join(f"{a:.4f}" for a in accs),
                f"{summary[name]['accuracy']:.4f}",
                f"{spread[name][0]:.4f} ± {spread[name][1]:.4f}",
                f"{summary[name]['samples_per_s']:.1f}",
                "1.00x" if name == "hf_trainer" else f"**{ratio:.2f}x** ({gap:+.2f} pt)",
            ]
        )
    ours, theirs = spread["tunesmith"], spread["hf_trainer"]
    accs = [r["accuracy"] for r in results["tunesmith"]]
    ratio = summary["tunesmith"]["samples_per_s"] / base["samples_per_s"]
    reading = (
        f"Bars: accuracy >= 0.85 and within 0.5 point of the Trainer, at >= 3x its samples/s. Speed "
        f"{'meets' if ratio >= 3 else 'misses'} its bar ({ratio:.2f}x). Accuracy, median "
        f"{summary['tunesmith']['accuracy']:.4f} vs {base['accuracy']:.4f} and mean {ours[0]:.4f} vs {theirs[0]:.4f} "
        f"({100 * (ours[0] - theirs[0]):+.2f} pt); tunesmith's seeds spread over "
        f"{100 * (max(accs) - min(accs)):.1f} points."
    )
    seeds = "/".join(str(args.first_seed + r) for r in range(args.repeats))
    publish(
        "classification_sst2",
        title=f"MiniLM on sst2, {args.samples:,} seeded training rows, 1 epoch",
        baseline="a plain Hugging Face `Trainer` script with default `TrainingArguments` (fp32, batch 8, lr 5e-5, "
        f"dynamic padding); both scored on sst2's validation file (872 sentences), seeds {seeds}.",
        tables=[
            {
                "columns": ["run", "accuracy per seed", "median acc", "mean ± sd", "median samples/s", "vs Trainer"],
                "rows": rows,
            }
        ],
        reading=reading,
    )


if __name__ == "__main__":
    main()
