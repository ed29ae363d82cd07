"""K examples per class, several seeds: SetFit (library defaults) vs tunesmith few_shot vs tunesmith supervised.

    python benchmarks/few_shot.py [--k 8] [--seeds 5] [--sets sst2 customer_reviews_cr ag_news_subset] [--json out.json]

Per dataset and seed, the same K-per-class rows (drawn by tunesmith's seeded sampler) go to all
three; the same MiniLM body; all are scored on the dataset's full validation file. Wall time covers
loading the model, training and scoring, for each. Prints mean ± std accuracy and wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def draw(name: str, k: int, seed: int, out: Path) -> Path:
    from tunesmith.data.classification import read_split, sample_per_class

    split = sample_per_class(read_split(str(DATA / name / "train.csv"), "text", "label"), k, seed)
    pd.DataFrame({"text": split.texts, "label": split.labels}).to_csv(out, index=False)
    return out


def run_setfit(train_csv: Path, name: str, seed: int, out: Path) -> float:
    """What the SetFit README shows: SetFitModel.from_pretrained, Trainer with default TrainingArguments."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tunesmith.models.loading import resolve_weights

    train, val = pd.read_csv(train_csv, dtype=str), pd.read_csv(DATA / name / "validation.csv", dtype=str)
    model = SetFitModel.from_pretrained(resolve_weights("minilm-l6"))
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(out), seed=seed, report_to="none"),
        train_dataset=Dataset.from_pandas(train),
        eval_dataset=Dataset.from_pandas(val),
        metric=_accuracy,
    )
    trainer.train()
    return trainer.evaluate()["accuracy"]


def _accuracy(y_pred, y_test) -> dict:
    # metric="accuracy" would fetch a script from the Hub through `evaluate`; offline, pass the function
    return {"accuracy": sum(str(p) == str(t) for p, t in zip(y_pred, y_test)) / len(y_test)}


def run_tunesmith(train_csv: Path, name: str, seed: int, method: str, out: Path, overrides: list[str]) -> float:
    """`method`: supervised, few_shot, or few_shot@N[xB] (N pairs per example, B pairs per step)."""
    import tunesmith

    method, _, setting = method.partition("@")
    pairs, _, batch = setting.partition("x")
    recipe = {
        "model": {"name": "minilm-l6"},
        "method": {"name": method, **({"pairs_per_example": int(pairs)} if pairs else {})},
        "data": {
            "train": str(train_csv),
            "validation": str(DATA / name / "validation.csv"),
            "min_examples_per_class": 1,
        },
        "train": {"seed": seed, **({"batch_size": int(batch)} if batch else {})},
        "eval": {"baseline": "none"},
    }
    return tunesmith.run(tunesmith.load_recipe(recipe, overrides), output_dir=out, overwrite=True).metrics["tuned"][
        "accuracy"
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", nargs="*", default=["sst2", "customer_reviews_cr", "ag_news_subset"])
    parser.add_argument(
        "--only",
        nargs="*",
        default=["setfit", "few_shot", "supervised"],
        help="methods; few_shot@N sets N pairs per example",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="recipe override for the tunesmith runs, e.g. --set train.warmup_ratio=0.1",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets:
            for seed in range(42, 42 + args.seeds):
                train_csv = draw(name, args.k, seed, tmp / f"{name}-{seed}.csv")
                for method in args.only:
                    start = time.perf_counter()
                    acc = (
                        run_setfit(train_csv, name, seed, tmp / "setfit")
                        if method == "setfit"
                        else run_tunesmith(train_csv, name, seed, method, tmp / f"run-{method}", args.overrides)
                    )
                    runs = results.setdefault(name, {}).setdefault(method, [])
                    runs.append({"seed": seed, "accuracy": acc, "wall_s": time.perf_counter() - start})
                    print(name, method, runs[-1], flush=True)
    summary = {
        name: {
            m: {
                "accuracy_mean": statistics.fmean(r["accuracy"] for r in runs),
                "accuracy_std": statistics.stdev([r["accuracy"] for r in runs]) if len(runs) > 1 else 0.0,
                "wall_s_mean": statistics.fmean(r["wall_s"] for r in runs),
            }
            for m, runs in methods.items()
        }
        for name, methods in results.items()
    }
    print(f"{'set':22} {'method':11} {'accuracy':>17} {'wall s':>8}")
    for name, methods in summary.items():
        for m, s in methods.items():
            print(f"{name:22} {m:11} {s['accuracy_mean']:.4f} ± {s['accuracy_std']:.4f} {s['wall_s_mean']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results, "k": args.k}, indent=2))


if __name__ == "__main__":
    main()
