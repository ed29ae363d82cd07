"""Staged runs vs training the target directly, same classification budget, several seeds.

    python benchmarks/staged.py [--seeds 3] [--only medical transfer] [--json out.json]

medical:  DAPT (masked-LM on medical_corpus_medquad) and DAPT+TAPT (plus the task's own abstracts),
          then medical_abstracts_subset classification, vs that classification alone from MiniLM.
transfer: sst2 sentiment (4,000 rows, 1 epoch), then financial_phrasebank_50agree from 200 rows,
          vs the same 200 rows alone.
Macro-F1 on each target's test file; mean ± std over seeds; the gain is staged minus direct.
The budgets are cut to fit a 2-core CPU (see --help); change them with the flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def split_files(name: str) -> dict:
    return {split: str(DATA / name / f"{split}.csv") for split in ("train", "validation", "test")}


def medical_recipes(args, seed: int) -> dict[str, dict]:
    target = {**split_files("medical_abstracts_subset"), "max_train_samples": args.medical_train}
    common = {
        "model": {"name": "minilm-l6"},
        "data": target,  # base probe kept: shows if pre-training hurt the body
        "train": {"seed": seed, "epochs": args.medical_epochs, "max_length": 128, "batch_size": 32},
    }
    classify = {"name": "classify", "method": {"name": "supervised", "class_weights": "balanced"}}

    def dapt(task_texts: bool) -> dict:
        return {
            "name": "dapt+tapt" if task_texts else "dapt",
            "train": {"epochs": 1, "lr": args.mlm_lr},
            "method": {
                "name": "domain_adaptation",
                "corpus": [str(DATA / "medical_corpus_medquad" / "train.jsonl")],
                "task_texts": task_texts,
                "max_tokens": args.mlm_tokens,
                "mlm_probability": args.mlm_probability,
            },
        }

    return {
        "dapt": {**common, "stages": [dapt(False), classify]},
        "dapt+tapt": {**common, "stages": [dapt(True), classify]},
    }


def transfer_recipes(args, seed: int) -> dict[str, dict]:
    target = {**split_files("financial_phrasebank_50agree"), "max_train_samples": args.transfer_target}
    source = {
        "train": str(DATA / "sst2" / "train.csv"),
        "validation": str(DATA / "sst2" / "validation.csv"),
        "max_train_samples": args.transfer_source,
    }
    return {
        "sst2->fpb": {
            "model": {"name": "minilm-l6"},
            "data": target,
            "train": {"seed": seed, "epochs": 5, "batch_size": 16, "max_length": 128},
            "stages": [
                {"name": "sst2", "data": source, "train": {"epochs": 1, "batch_size": 32}},
                {"name": "fpb", "method": {"name": "supervised", "class_weights": "balanced"}},
            ],
        }
    }


def run_set(name: str, builder, args, tmp: Path) -> dict:
    import tunesmith

    per_seed = []
    for seed in range(42, 42 + args.seeds):
        row = {"seed": seed}
        for index, (variant, recipe) in enumerate(builder(args, seed).items()):
            start = time.perf_counter()
            m = tunesmith.run(
                recipe, output_dir=tmp / f"{name}-{variant}-{seed}", overwrite=True, compare_direct=index == 0
            ).metrics  # one control run per seed is enough
            row[variant] = m["tuned"]["f1_macro"]
            row[f"{variant}_wall_s"] = time.perf_counter() - start
            row[f"{variant}_stages"] = [
                {"name": s["name"], "own": s["own"]["tuned"], "target": s["target"]} for s in m["stages"]
            ]
            row["base_probe_f1"] = m["base"].get("f1_macro")
            row[f"{variant}_probe_f1"] = m["stages"][0]["target"].get("f1_macro")  # body after the first stage
            if "direct" in m:
                row["direct"] = m["direct"]["f1_macro"]
        print(name, json.dumps({k: v for k, v in row.items() if not k.endswith("_stages")}), flush=True)
        per_seed.append(row)
    variants = ["direct"] + list(builder(args, 42))
    summary = {
        v: {
            "f1_macro_mean": statistics.fmean(r[v] for r in per_seed),
            "f1_macro_std": statistics.stdev([r[v] for r in per_seed]) if len(per_seed) > 1 else 0.0,
        }
        for v in variants
    }
    for v in variants[1:]:
        summary[v]["gain_points_vs_direct"] = 100 * (summary[v]["f1_macro_mean"] - summary["direct"]["f1_macro_mean"])
    return {"summary": summary, "runs": per_seed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["medical", "transfer"])
    parser.add_argument("--medical-train", type=int, default=800, help="classification rows (of 2,126)")
    parser.add_argument("--medical-epochs", type=float, default=2)
    parser.add_argument("--mlm-tokens", type=int, default=150_000, help="DAPT budget (of ~2.5M corpus tokens)")
    parser.add_argument("--mlm-lr", type=float, default=1e-4)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--transfer-source", type=int, default=4000)
    parser.add_argument("--transfer-target", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    builders = {"medical": medical_recipes, "transfer": transfer_recipes}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            results[name] = run_set(name, builders[name], args, Path(tmp))
    print(f"{'set':10} {'variant':12} {'macro-F1':>17} {'gain (points)':>14}")
    for name, res in results.items():
        for variant, s in res["summary"].items():
            gain = s.get("gain_points_vs_direct")
            print(
                f"{name:10} {variant:12} {s['f1_macro_mean']:.4f} ± {s['f1_macro_std']:.4f} "
                f"{'' if gain is None else f'{gain:+.2f}':>14}"
            )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **results}, indent=2))


if __name__ == "__main__":
    main()
