"""Base vs tuned on the shipped domain recipes (finance, legal by default), as a user would run them.

    python benchmarks/recipes_base_vs_tuned.py [financial_sentiment ...] [--json out.json]

Prints, per recipe, the base model's (linear probe) and the tuned model's macro-F1 and accuracy on
the recipe's test set, and the training time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "tunesmith" / "recipes"
DEFAULT = [RECIPES / "financial_sentiment.yaml", RECIPES / "contract_clauses.yaml"]
os.environ.setdefault("TUNESMITH_DATA_ROOT", str(ROOT.parent / "shared" / "data"))  # the recipes' data


def main() -> None:
    import tunesmith

    parser = argparse.ArgumentParser()
    parser.add_argument("recipes", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.recipes:
            path = path if path.suffix else RECIPES / f"{path}.yaml"  # a shipped recipe's name, or a file
            m = tunesmith.run(tunesmith.load_recipe(path, args.overrides), output_dir=Path(tmp) / path.stem).metrics
            rows[path.stem] = {
                "base_f1_macro": m["base"]["f1_macro"],
                "tuned_f1_macro": m["tuned"]["f1_macro"],
                "base_accuracy": m["base"]["accuracy"],
                "tuned_accuracy": m["tuned"]["accuracy"],
                "eval_set": m["eval_set"],
                "epochs": m["train"]["epochs"],
                "best_epoch": m["train"]["best_epoch"],
                "runtime_s": m["train"]["runtime_s"],
            }
            print(path.stem, json.dumps(rows[path.stem]), flush=True)
    print(f"{'recipe':28} {'base F1':>8} {'tuned F1':>8} {'base acc':>8} {'tuned acc':>9}")
    for name, r in rows.items():
        print(
            f"{name:28} {r['base_f1_macro']:8.4f} {r['tuned_f1_macro']:8.4f} {r['base_accuracy']:8.4f} "
            f"{r['tuned_accuracy']:9.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
