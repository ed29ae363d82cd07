"""Few-shot multi-label, MiniLM: K examples per label, several seeds; SetFit as its docs show for multi-label
(`multi_target_strategy="one-vs-rest"`, default TrainingArguments) vs tunesmith `method: few_shot` (defaults).

    python benchmarks/few_shot_multilabel.py [--k 8] [--seeds 3] [--sets medical_hoc_multilabel goemotions_multilabel]
        [--max-eval 1000] [--json out.json]

Per set and seed, the same rows go to both: tunesmith's `data.samples_per_class` draw (each label, rarest first,
gets seeded rows carrying it until it has K; a row counts for every label it carries). Both are scored on the
same seeded sample of the test file;
tunesmith chooses its thresholds on a sample of the validation file, SetFit predicts at its 0.5. The base line is
tunesmith's: the same per-label heads on the untuned body.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def labels_of(cell) -> list[str]:
    return [p for p in str(cell).split("|") if p] if isinstance(cell, str) else []


def draw(frame: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """tunesmith's own seeded per-label draw (data.samples_per_class on multi-label data), so SetFit gets the
    same rows."""
    from tunesmith.data.multilabel import MultiLabelSplit, sample_per_label

    split = sample_per_label(
        MultiLabelSplit(frame.text.tolist(), [labels_of(c) for c in frame["labels"]], source=""), k, seed
    )
    return pd.DataFrame({"text": split.texts, "labels": ["|".join(row) for row in split.labels]})


def micro_macro(gold: list[list[str]], predicted: list[list[str]], labels: list[str]) -> dict:
    from tunesmith.data.multilabel import multi_hot
    from tunesmith.tasks.multilabel import multilabel_metrics

    m = multilabel_metrics(
        np.asarray(multi_hot(gold, labels)), np.asarray(multi_hot(predicted, labels)), labels, detail=False
    )
    return {"f1_micro": m["f1_micro"], "f1_macro": m["f1_macro"]}


def run_setfit(train: pd.DataFrame, test: pd.DataFrame, labels: list[str], seed: int, out: Path) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tunesmith.data.multilabel import multi_hot
    from tunesmith.models.loading import resolve_weights

    model = SetFitModel.from_pretrained(resolve_weights("minilm-l6"), multi_target_strategy="one-vs-rest")
    data = Dataset.from_dict(
        {"text": train.text.tolist(), "label": multi_hot([labels_of(c) for c in train["labels"]], labels)}
    )
    Trainer(
        model=model, args=TrainingArguments(output_dir=str(out), seed=seed, report_to="none"), train_dataset=data
    ).train()
    hot = np.asarray(model.predict(test.text.tolist()))
    return micro_macro(
        [labels_of(c) for c in test["labels"]], [[labels[j] for j in np.flatnonzero(row)] for row in hot], labels
    )


def run_tunesmith(train_csv: Path, val_csv: Path, test_csv: Path, seed: int, out: Path) -> dict:
    import tunesmith

    recipe = {
        "model": "minilm-l6",
        "method": "few_shot",
        "train": {"seed": seed},
        "data": {
            "train": str(train_csv),
            "validation": str(val_csv),
            "test": str(test_csv),
            "label_column": "labels",
            "label_separator": "|",
            "min_examples_per_class": 1,
        },
    }
    m = tunesmith.run(recipe, output_dir=out, overwrite=True).metrics
    return {
        "f1_micro": m["tuned"]["f1_micro"],
        "f1_macro": m["tuned"]["f1_macro"],
        "base": {"f1_micro": m["base"]["f1_micro"], "f1_macro": m["base"]["f1_macro"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", nargs="*", default=["medical_hoc_multilabel", "goemotions_multilabel"])
    parser.add_argument("--max-eval", type=int, default=1000, help="seeded sample of validation and test files")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets:
            full = pd.read_csv(DATA / name / "train.csv", keep_default_na=False)
            files = {}
            for split in ("validation", "test"):
                frame = pd.read_csv(DATA / name / f"{split}.csv", keep_default_na=False)
                frame = frame.sample(n=min(args.max_eval, len(frame)), random_state=0)[["text", "labels"]]
                files[split] = tmp / f"{name}-{split}.csv"
                frame.to_csv(files[split], index=False)
            test = pd.read_csv(files["test"], keep_default_na=False)
            for seed in range(42, 42 + args.seeds):
                train = draw(full, args.k, seed)
                labels = sorted({label for c in train["labels"] for label in labels_of(c)})
                train_csv = tmp / f"{name}-{seed}.csv"
                train.to_csv(train_csv, index=False)
                for method in ("setfit", "tunesmith"):
                    start = time.perf_counter()
                    scores = (
                        run_setfit(train, test, labels, seed, tmp / "setfit")
                        if method == "setfit"
                        else run_tunesmith(train_csv, files["validation"], files["test"], seed, tmp / "run")
                    )
                    scores.update(wall_s=time.perf_counter() - start, rows=len(train), seed=seed)
                    results.setdefault(name, {}).setdefault(method, []).append(scores)
                    print(name, method, json.dumps(scores), flush=True)
    print(f"\n{'set':24} {'method':10} {'micro-F1':>16} {'macro-F1':>16} {'wall s':>7}")
    for name, methods in results.items():
        for method, runs in methods.items():
            cell = lambda key: (
                f"{statistics.fmean(r[key] for r in runs):.4f} ± {statistics.pstdev([r[key] for r in runs]):.4f}"
            )  # noqa: E731
            print(
                f"{name:24} {method:10} {cell('f1_micro'):>16} {cell('f1_macro'):>16} "
                f"{statistics.fmean(r['wall_s'] for r in runs):7.1f}"
            )
        base = methods["tunesmith"]
        print(
            f"{name:24} {'base':10} {statistics.fmean(r['base']['f1_micro'] for r in base):16.4f} "
            f"{statistics.fmean(r['base']['f1_macro'] for r in base):16.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
