"""How should a new classification head start? `method.head_init` random vs probe (LP-FT), defaults otherwise,
on the same seeded, capped rows that benchmarks/defaults.py uses; one process per run, rows interleaved.

    python benchmarks/head_init.py [--sets sst5 legal_cuad_clause_types ...] [--max-train 1000] [--seeds 42 43]

Prints accuracy and macro-F1 per set, head start and seed, and the medians. The rule behind head_init 'auto'
(src/tunesmith/methods/head_init.py) is read off this table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults import cpu_name, prepare  # noqa: E402

VARIANTS = ("random", "probe")


def child(files: dict, head_init: str, seed: int, out: Path) -> None:
    import tunesmith

    recipe = {
        "model": "minilm-l6",
        "data": files,
        "method": {"name": "supervised", "head_init": head_init},
        "train": {"seed": seed},
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    print(
        "RESULT "
        + json.dumps(
            {
                "accuracy": m["tuned"]["accuracy"],
                "f1_macro": m["tuned"]["f1_macro"],
                "base_accuracy": m["base"].get("accuracy"),
                "auto": m["train"].get("auto"),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sets", nargs="*", default=["sst5", "legal_cuad_clause_types", "medical_abstracts_subset", "ag_news_subset"]
    )
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=1000)
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
        for name in args.sets:
            for seed in args.seeds:
                files = prepare(f"cls:{name}", Path(tmp), args.max_train, args.max_test, seed)
                for variant in VARIANTS:
                    out = Path(tmp) / f"{name}-{variant}-{seed}"
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(files), variant, str(seed), str(out)],
                        capture_output=True,
                        text=True,
                    )
                    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                    row = json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-800:]}
                    results.setdefault(name, {}).setdefault(variant, {})[seed] = row
                    print(name, variant, seed, json.dumps(row), flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=2))
    print("\n| set | head | accuracy (median) | macro-F1 (median) | per seed (acc) |\n|---|---|---:|---:|---|")
    for name, by in results.items():
        for variant, seeds in by.items():
            ok = [r for r in seeds.values() if "error" not in r]
            if ok:
                acc = statistics.median(r["accuracy"] for r in ok)
                f1 = statistics.median(r["f1_macro"] for r in ok)
                print(
                    f"| {name} | {variant} | {acc:.4f} | {f1:.4f} | {' / '.join('%.4f' % r['accuracy'] for r in ok)} |"
                )


if __name__ == "__main__":
    main()
