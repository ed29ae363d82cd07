"""What `auto` costs: a recipe with no train keys vs the same recipe with the defaults tunesmith had before `auto`
(3 epochs, batch 32, the model's registry lr: 2e-4 for MiniLM), on sst2 (8,000 seeded rows), interleaved A/B
repeats. Prints what auto chose, the median whole-run time of each (data check, base probe, training, evaluation:
everything `auto` could add to) and the ratio, and both accuracies.

    python benchmarks/auto_cost.py [--samples 8000] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"
BEFORE_AUTO = {"epochs": 3, "batch_size": 32, "lr": 2e-4}


def one_run(train_csv: Path, seed: int, out: Path, explicit: bool) -> dict:
    import tunesmith

    train = {"seed": seed, **(BEFORE_AUTO if explicit else {})}
    recipe = {
        "model": "minilm-l6",
        "train": train,
        "data": {"train": str(train_csv), "validation": str(DATA / "validation.csv")},
    }
    start = time.perf_counter()
    m = tunesmith.run(recipe, output_dir=out, overwrite=True).metrics
    return {
        "wall_s": time.perf_counter() - start,
        "accuracy": m["tuned"]["accuracy"],
        "train_s": m["train"]["runtime_s"],
        "auto": m["train"].get("auto"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = {"auto": [], "before_auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pd.read_csv(DATA / "train.csv").sample(n=args.samples, random_state=args.seed).to_csv(
            tmp / "train.csv", index=False
        )
        for repeat in range(args.repeats):  # interleaved: a slow spell of the machine hits both sides
            order = ("auto", "before_auto") if repeat % 2 == 0 else ("before_auto", "auto")
            for name in order:
                runs[name].append(one_run(tmp / "train.csv", args.seed, tmp / name, explicit=name == "before_auto"))
                print(name, json.dumps(runs[name][-1]), flush=True)
    summary = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "train_s", "accuracy")}
        for name, rs in runs.items()
    }
    summary["ratio_wall_auto_vs_before"] = summary["auto"]["wall_s"] / summary["before_auto"]["wall_s"]
    summary["auto_chose"] = runs["auto"][0]["auto"]
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
