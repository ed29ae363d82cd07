"""What a 12-trial sweep buys over tunesmith's defaults, on shipped recipes, and what --jobs 2 saves.

    python benchmarks/sweep.py [medical_specialties medical_entities support_assistant] [--trials 12]
        [--train-samples 1000] [--generation-samples 200] [--jobs-compare [--compare-trials N]] [--from earlier.json]
        [--json out.json] [--publish]

Each case is a shipped recipe (its data from ../shared/data through the data root) on a seeded sample of
`--train-samples` training rows (`--generation-samples` for the SmolLM2 case: a row costs it over 100x; judged by
the loss, its trials generate no answers), searched with the recipe's tuning mode's default space (docs/sweeps.md),
pruning on, then the defaults over 3 seeds and the test set read once: validation and test of the best trial beside
the defaults' mean ± std, the verdict, and the sweep's wall time. `--jobs-compare` trains the same trials' values
again with `--jobs 1` and with `--jobs 2` (pruning off, no defaults runs: only the search is timed) and gives both
wall times (`--compare-trials N`: the first N trials' values only). `--from earlier.json` takes the cases' sweeps
from an earlier run's --json instead of searching again (to time --jobs on a quiet machine after a search that
shared one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "tunesmith" / "recipes"
CASES = {  # shipped recipe -> what it stands for
    "medical_specialties": "classification, 5 classes",
    "medical_entities": "NER (diseases)",
    "support_assistant": "generation (SmolLM2 LoRA)",
}
os.environ.setdefault("TUNESMITH_DATA_ROOT", str(ROOT.parent / "shared" / "data"))


def case_samples(name: str, args) -> int:
    return args.generation_samples if name == "support_assistant" else args.train_samples


def case_recipe(name: str, args) -> dict:
    """The shipped recipe with a test file, a training sample, and a 12-trial sweep over the default space."""
    import tunesmith

    samples = case_samples(name, args)
    recipe = tunesmith.load_recipe(RECIPES / f"{name}.yaml", [f"data.max_train_samples={samples}"])
    raw = recipe.model_dump(mode="json", exclude_unset=True)
    data = raw["data"]
    if not data.get("test"):
        data["test"] = str(
            Path(data["validation"]).with_name(Path(data["validation"]).name.replace("validation", "test"))
        )
    raw["sweep"] = {"trials": args.trials, "defaults_seeds": 3}
    return raw


def run_case(name: str, args, tmp: Path) -> dict:
    from tunesmith.sweep import run_sweep

    start = time.perf_counter()
    summary = run_sweep(case_recipe(name, args), tmp / name)
    wall = time.perf_counter() - start
    val = [d["validation"] for d in summary["defaults"]]
    test = [d["test"] for d in summary["defaults"]]
    states = [t["state"] for t in summary["trials"]]
    return {
        "metric": summary["metric"],
        "best": {k: summary["best"][k] for k in ("number", "params", "validation", "test")},
        "defaults_validation": [statistics.mean(val), statistics.stdev(val)],
        "defaults_test": [statistics.mean(test), statistics.stdev(test)],
        "defaults_test_runs": test,
        "verdict": summary["verdict"],
        "pruned": states.count("pruned"),
        "wall_s": wall,
        "trial_params": [t["params"] for t in summary["trials"]],
        "train_samples": case_samples(name, args),
    }


def jobs_compare(name: str, args, tmp: Path, params: list[dict]) -> dict:
    """The same trials' values with one worker and with two: the search's wall time only."""
    from tunesmith.recipe import load_recipe
    from tunesmith.sweep.study import open_study, prepare, run_workers

    out = {}
    for jobs in (1, 2):
        raw = case_recipe(name, args)
        raw["sweep"].update(pruning=False, defaults_seeds=0)
        setup = prepare(load_recipe(raw), tmp / f"{name}-jobs{jobs}", len(params), None, None)
        study = open_study(setup)
        for values in params:
            study.enqueue_trial(values)
        start = time.perf_counter()
        run_workers(setup, jobs)
        out[f"jobs{jobs}_s"] = time.perf_counter() - start
    out["speedup"] = out["jobs1_s"] / out["jobs2_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=list(CASES), help=f"any of {', '.join(CASES)}")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--train-samples", type=int, default=1000)
    parser.add_argument("--generation-samples", type=int, default=200)
    parser.add_argument("--jobs-compare", action="store_true")
    parser.add_argument("--compare-trials", type=int, help="time --jobs on the first N trials' values (default: all)")
    parser.add_argument("--from", dest="earlier", type=Path, help="an earlier --json: its sweeps, not searched again")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    results = {}
    earlier = json.loads(args.earlier.read_text()) if args.earlier else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            results[name] = earlier.get(name) or run_case(name, args, Path(tmp))
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "trial_params"}), flush=True)
            if args.jobs_compare:
                params = results[name]["trial_params"][: args.compare_trials]
                results[name]["jobs"] = {**jobs_compare(name, args, Path(tmp), params), "trials": len(params)}
                print(name, "jobs", json.dumps(results[name]["jobs"]), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    table = {
        "columns": ["case", "metric", "defaults val (3 seeds)", "best val", "defaults test (3 seeds)", "best test",
                    "verdict", "pruned", "wall", "jobs 1 / jobs 2"],
        "rows": [
            [
                f"{name} ({CASES[name]}, {r.get('train_samples', '?')} training rows)",
                r["metric"],
                f"{r['defaults_validation'][0]:.4f} ± {r['defaults_validation'][1]:.4f}",
                f"{r['best']['validation']:.4f}",
                f"{r['defaults_test'][0]:.4f} ± {r['defaults_test'][1]:.4f}",
                f"{r['best']['test']:.4f}",
                r["verdict"],
                f"{r['pruned']} of {args.trials}",
                f"{r['wall_s'] / 60:.1f} min",
                f"{r['jobs']['jobs1_s'] / 60:.1f} / {r['jobs']['jobs2_s'] / 60:.1f} min ({r['jobs']['trials']} trials)"
                if "jobs" in r
                else "",
            ]
            for name, r in results.items()
        ],
    }  # fmt: skip
    print("\n| " + " | ".join(table["columns"]) + " |")
    for row in table["rows"]:
        print("| " + " | ".join(row) + " |")
    if args.publish:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import publish

        publish(
            "sweep",
            title="What a sweep buys over the defaults (shipped recipes, default search spaces)",
            baseline=(
                f"the recipe as written, 3 seeds; {args.trials} trials (TPE, median pruning) on a seeded sample of "
                "training rows (per case), the test set read once after the search"
            ),
            tables=[table],
            reading="A gain inside the defaults' seed-to-seed range is called noise by the verdict.",
        )


if __name__ == "__main__":
    main()
