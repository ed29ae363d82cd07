"""How should a new classification or tag head start? `method.head_init` random vs probe (LP-FT), defaults
otherwise, on the same seeded, capped rows that benchmarks/defaults.py uses; one process per run, rows interleaved.

    python benchmarks/head_init.py [--sets sst5 legal_cuad_clause_types ...] [--max-train 1000] [--seeds 42 43]
    python benchmarks/head_init.py --task token_classification --sets social_ner_wnut17 ... --max-train 300 1500
    python benchmarks/head_init.py --task regression --sets emobank_regression stsb_regression --max-train 300 1000

Prints accuracy and macro-F1 (entity F1 for tags, Spearman for scores) per set, size, head start and seed, and the
medians. The rule behind head_init 'auto' (src/tunesmith/methods/head_init.py) is read off this table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults import SHARED, cpu_name, prepare  # noqa: E402

VARIANTS = ("random", "probe")


def child(files: dict, head_init: str, seed: int, out: Path) -> None:
    import tunesmith

    task = files.pop("task", "classification")
    tags = task == "token_classification"
    epochs = files.pop("epochs", None)
    recipe = {
        "model": "minilm-l6",
        "data": files,
        "method": {"name": "supervised", "head_init": head_init},
        "train": {"seed": seed, **({"max_length": 128} if tags else {}), **({"epochs": epochs} if epochs else {})},
        "task": task,
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    train = m["train"]
    if tags:
        scores = {"f1": m["tuned"]["f1"], "base_f1": m["base"].get("f1")}
    elif task == "regression":
        scores = {"spearman": m["tuned"]["spearman"], "mse": m["tuned"]["mse"], "base_spearman": m["base"]["spearman"]}
    else:
        scores = {
            "accuracy": m["tuned"]["accuracy"],
            "f1_macro": m["tuned"]["f1_macro"],
            "base_accuracy": m["base"].get("accuracy"),
        }
    batches = -(-train["train_size"] // train["effective_batch_size"])
    steps = {"steps": batches * train["epochs"], "labels": len(m.get("labels") or [])}
    print("RESULT " + json.dumps({**scores, **steps, "auto": train.get("auto")}), flush=True)


def prepare_tags(name: str, tmp: Path, max_train: int, max_test: int, seed: int) -> dict:
    """Seeded samples of an entity set's JSONL files (validation half the test cap), the same for both heads."""
    files = {"task": "token_classification"}
    for split, cap in (("train", max_train), ("validation", max_test // 2), ("test", max_test)):
        lines = [x for x in (SHARED / name / f"{split}.jsonl").read_text().splitlines() if x.strip()]
        random.Random(seed).shuffle(lines)
        path = tmp / f"{name}-{cap}-{split}.jsonl"
        path.write_text("\n".join(lines[:cap]) + "\n")
        files[split] = str(path)
    return files


def prepare_scores(name: str, tmp: Path, max_train: int, max_test: int, seed: int) -> dict:
    """Seeded samples of a regression set's CSV files (any pair column kept), the same for both heads. Not
    benchmarks/defaults.capped: it keeps two rows of every label value, which for scores is most of the file."""
    import pandas as pd

    files = {"task": "regression"}
    for split, cap in (("train", max_train), ("validation", max_test // 2), ("test", max_test)):
        frame = pd.read_csv(SHARED / name / f"{split}.csv").dropna(subset=["text"])  # EmoBank holds an empty text
        frame = frame.sample(frac=1.0, random_state=seed).head(cap)
        path = tmp / f"{name}-{cap}-{split}.csv"
        frame.to_csv(path, index=False)
        files[split] = str(path)
    if "text_pair" in frame.columns:
        files["text_pair_column"] = "text_pair"
    return files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sets", nargs="*", default=["sst5", "legal_cuad_clause_types", "medical_abstracts_subset", "ag_news_subset"]
    )
    parser.add_argument(
        "--task", choices=["classification", "token_classification", "regression"], default="classification"
    )
    parser.add_argument("--max-train", type=int, nargs="*", default=[1000])
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--epochs", type=float, help="as a user who sets train.epochs would (default: auto)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        files, head_init, seed, out = args.child
        return child(json.loads(files), head_init, int(seed), Path(out))
    print(f"CPU: {cpu_name()}; training files capped at {args.max_train} rows")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cap, seed in [(n, c, s) for n in args.sets for c in args.max_train for s in args.seeds]:
            make = {"token_classification": prepare_tags, "regression": prepare_scores}.get(args.task)
            files = (
                make(name, Path(tmp), cap, args.max_test, seed)
                if make
                else prepare(f"cls:{name}", Path(tmp), cap, args.max_test, seed)
            )
            if args.epochs:
                files["epochs"] = args.epochs
            key = name if len(args.max_train) == 1 else f"{name} ({cap})"
            for variant in VARIANTS:
                out = Path(tmp) / f"{name}-{cap}-{variant}-{seed}"
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(files), variant, str(seed), str(out)],
                    capture_output=True,
                    text=True,
                )
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                row = json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-800:]}
                results.setdefault(key, {}).setdefault(variant, {})[seed] = row
                print(key, variant, seed, json.dumps(row), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=2))
    score = {"token_classification": "f1", "regression": "spearman"}.get(args.task, "accuracy")
    print(f"\n| set | head | steps per label | {score} (median) | per seed |\n|---|---|---:|---:|---|")
    for name, by in results.items():
        for variant, seeds in by.items():
            ok = [r for r in seeds.values() if "error" not in r]
            if ok:
                mid = statistics.median(r[score] for r in ok)
                per_label = ok[0]["steps"] / max(ok[0]["labels"], 1)
                each = " / ".join(f"{r[score]:.4f}" for r in ok)
                print(f"| {name} | {variant} | {per_label:.0f} | {mid:.4f} | {each} |")


if __name__ == "__main__":
    main()
