"""MiniLM on STS-B (sentence-pair similarity, 0-5): the base line (ridge on frozen embeddings) vs the tuned
model, with tunesmith's defaults for task: regression. Prints Pearson/Spearman/MSE of both and the time.

    python benchmarks/regression_stsb.py [--samples N] [--seeds 1] [--set train.epochs=2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsb_regression"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    import tunesmith

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=None, help="seeded sample of the 5,749 training pairs")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.seeds):
            recipe = {
                "task": "regression",
                "model": "minilm-l6",
                "train": {"seed": 42 + i},
                "data": {
                    "train": str(DATA / "train.csv"),
                    "validation": str(DATA / "validation.csv"),
                    "test": str(DATA / "test.csv"),
                    "text_pair_column": "text_pair",
                    **({"max_train_samples": args.samples} if args.samples else {}),
                },
            }
            m = tunesmith.run(tunesmith.load_recipe(recipe, args.overrides), output_dir=Path(tmp) / f"run-{i}").metrics
            runs.append(
                {
                    "seed": 42 + i,
                    "base": m["base"],
                    "tuned": m["tuned"],
                    "train_s": m["train"]["runtime_s"],
                    "epochs": m["train"]["epochs"],
                    "samples_per_s": m["train"]["samples_per_s"],
                }
            )
    summary = {
        side: {k: statistics.median(r[side][k] for r in runs) for k in ("pearson", "spearman", "mse")}
        for side in ("base", "tuned")
    }
    summary.update(
        cpu=cpu_name(),
        seeds=args.seeds,
        overrides=args.overrides,
        train_s=statistics.median(r["train_s"] for r in runs),
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
