"""Repeat a whole run over several seeds (data draw, split, init, order) and report mean ± std.

With a handful of examples per class, one run's score says more about which examples were drawn
than about the method; the spread over seeds is the honest figure.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..engine.metrics import shown_keys
from ..runs import rundir as runs
from .single import run_single
from .stages import run_stages

SEED_DIR = "seed-{}"


def run_seeds(recipe, output_dir, overwrite: bool, files: dict | None = None) -> tuple[Path, dict]:
    """Each seed gets a full run directory inside (a single run, or the recipe's stages)."""
    with runs.RunDir.open(recipe, output_dir, overwrite, files=files) as run:
        metrics = _all_seeds(recipe, run.path)
    return run.path, metrics


def _all_seeds(recipe, run_dir: Path) -> dict:
    seeds = [recipe.train.seed + i for i in range(recipe.train.seeds)]
    per_seed = []
    for seed in seeds:
        one = recipe.model_copy(deep=True)
        one.train.seed, one.train.seeds = seed, 1
        one.train.data_check = "off"  # checked once for the whole run (few-shot draws differ by seed, files do not)
        seed_dir = run_dir / SEED_DIR.format(seed)
        metrics = (run_stages(one, seed_dir, True) if one.stages else run_single(one, seed_dir, True))[1]
        per_seed.append(
            {
                "seed": seed,
                "base": _numbers(metrics["base"]),
                "tuned": _numbers(metrics["tuned"]),
                "runtime_s": metrics["train"]["runtime_s"],
            }
        )
    summary = {
        "task": metrics["task"],
        "method": metrics["method"],
        "model": metrics["model"],
        "eval_set": metrics["eval_set"],
        "eval_size": metrics["eval_size"],
        "seeds": seeds,
        "base": _mean(per_seed, "base"),
        "tuned": _mean(per_seed, "tuned"),
        "base_std": _std(per_seed, "base"),
        "tuned_std": _std(per_seed, "tuned"),
        "train": {"runtime_s": sum(s["runtime_s"] for s in per_seed)},
        "per_seed": per_seed,
        "model_dir": SEED_DIR.format(seeds[0]),
    }
    runs.write_metrics(run_dir, summary)
    (run_dir / "report.md").write_text(_report(summary), encoding="utf-8")
    return summary


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _mean(per_seed: list[dict], side: str) -> dict:
    keys = per_seed[0][side].keys()
    return {k: statistics.fmean(s[side][k] for s in per_seed) for k in keys}


def _std(per_seed: list[dict], side: str) -> dict:
    keys = per_seed[0][side].keys()
    return {k: statistics.stdev([s[side][k] for s in per_seed]) if len(per_seed) > 1 else 0.0 for k in keys}


def _num(metrics: dict, key: str) -> str:
    """A figure, or a dash where that side has none (the base line has no loss of the tuned head)."""
    return f"{metrics[key]:.4f}" if key in metrics else "—"


def _pm(m: dict, side: str, key: str) -> str:
    return f"{_num(m[side], key)} ± {_num(m[f'{side}_std'], key)}" if key in m[side] else "—"


def _report(m: dict) -> str:
    keys = shown_keys(m["tuned"])
    head = "| metric | base (mean ± std) | tuned (mean ± std) |\n|---|---|---|\n"
    rows = "\n".join(f"| {k} | {_pm(m, 'base', k)} | {_pm(m, 'tuned', k)} |" for k in keys)
    seed_head = (
        "| seed | "
        + " | ".join(f"base {k} | tuned {k}" for k in keys[:2])
        + " |\n|---" * (1 + 2 * len(keys[:2]))
        + "|\n"
    )
    seed_rows = "\n".join(
        f"| {s['seed']} | " + " | ".join(f"{_num(s['base'], k)} | {_num(s['tuned'], k)}" for k in keys[:2]) + " |"
        for s in m["per_seed"]
    )
    return f"""# tunesmith run report — {len(m["seeds"])} seeds

Model `{m["model"]}`, method {m["method"]}, evaluated on the {m["eval_set"]} set ({m["eval_size"]} examples).
Each seed draws its own training examples and initialisation; each has a full run directory
(`seed-<n>/`, with its own report). The model used by `predict` is the first seed's ({m["model_dir"]}).

## Mean ± std over seeds

{head}{rows}

## Per seed

{seed_head}{seed_rows}
"""
