"""Continual learning: naive vs replay vs ewc vs replay+ewc on two streams, several seeds, one run.

    python benchmarks/continual.py [--seeds 3] [--train-per-experience 400] [--json out.json]

amazon:  review sentiment, books -> dvd -> electronics -> kitchen (domain-incremental), MiniLM.
ag_news: World+Sports, then Business+Sci/Tech (class-incremental: the head grows).
Each experience trains on a seeded sample of its rows (the budget flag) and is scored on its test
rows. Prints final average accuracy, backward transfer (BWT; |BWT| = forgetting) and wall time, mean
± std over seeds, and each strategy's ratios to naive.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STREAMS = {
    "amazon": ("amazon_reviews_multidomain", "domain", [["books"], ["dvd"], ["electronics"], ["kitchen"]]),
    "ag_news": ("ag_news_subset", "label", [["World", "Sports"], ["Business", "Sci/Tech"]]),
}
STRATEGIES = {"naive": ["naive"], "replay": ["replay"], "ewc": ["ewc"], "replay+ewc": ["replay", "ewc"]}


def recipe(stream: str, strategy: list[str], seed: int, n_train: int, method: dict | None = None) -> dict:
    folder, column, groups = STREAMS[stream]
    files = {split: str(DATA / folder / f"{split}.csv") for split in ("train", "validation", "test")}
    return {
        "model": {"name": "minilm-l6"},
        "eval": {"baseline": "none"},
        "method": {"name": "continual", "strategy": strategy, **(method or {})},  # the method's defaults
        "train": {"seed": seed, "epochs": 1, "batch_size": 32, "max_length": 128},
        "experiences": [
            {"name": "+".join(g), "data": {**files, "filter": {column: g}, "max_train_samples": n_train}}
            for g in groups
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--streams", nargs="*", default=list(STREAMS))
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument("--train-per-experience", type=int, default=400)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--method",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="method overrides for every strategy, e.g. ewc_lambda=1e6 replay_ratio=0.5",
    )
    args = parser.parse_args()
    import yaml

    import tunesmith

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.method)}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stream in args.streams:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for name in args.strategies:
                    start = time.perf_counter()
                    m = tunesmith.run(
                        recipe(stream, STRATEGIES[name], seed, args.train_per_experience, overrides),
                        output_dir=Path(tmp) / f"{stream}-{name}-{seed}",
                        overwrite=True,
                    ).metrics["continual"]
                    row = {
                        "seed": seed,
                        "average_accuracy": m["average_accuracy"],
                        "bwt": m["bwt"],
                        "matrix": m["matrix"],
                        "wall_s": time.perf_counter() - start,
                    }
                    results.setdefault(stream, {}).setdefault(name, []).append(row)
                    print(stream, name, json.dumps({k: v for k, v in row.items() if k != "matrix"}), flush=True)
    summary = {}
    for stream, by_name in results.items():
        summary[stream] = {}
        for name, rows in by_name.items():
            stat = lambda key: (
                statistics.fmean(r[key] for r in rows),  # noqa: E731
                statistics.stdev([r[key] for r in rows]) if len(rows) > 1 else 0.0,
            )
            summary[stream][name] = {k: stat(k) for k in ("average_accuracy", "bwt", "wall_s")}
        naive = summary[stream].get("naive")
        for name, s in summary[stream].items():
            if naive:
                s["forgetting_vs_naive"] = abs(s["bwt"][0]) / max(abs(naive["bwt"][0]), 1e-9)
                s["wall_vs_naive"] = s["wall_s"][0] / naive["wall_s"][0]
    print(
        f"{'stream':8} {'strategy':11} {'avg accuracy':>17} {'BWT':>17} {'wall s':>12} {'|BWT| / naive':>13} "
        f"{'time / naive':>12}"
    )
    for stream, by_name in summary.items():
        for name, s in by_name.items():
            print(
                f"{stream:8} {name:11} {s['average_accuracy'][0]:.4f} ± {s['average_accuracy'][1]:.4f} "
                f"{s['bwt'][0]:+.4f} ± {s['bwt'][1]:.4f} {s['wall_s'][0]:6.1f} ± {s['wall_s'][1]:4.1f} "
                f"{s.get('forgetting_vs_naive', float('nan')):13.2f} {s.get('wall_vs_naive', float('nan')):12.2f}"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
