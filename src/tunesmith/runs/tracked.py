"""A run folder as a tracked run: the recipe's trackers start with the folder and end with it, and a
finished run logs its base and tuned metrics and its files (report, plots, metrics.json)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..engine import tracking
from ..recipe import dotted

ARTIFACTS = ("report.md", "metrics.json", "data_check.md")
SUMMARY = ("base", "tuned", "direct")  # metrics.json blocks logged at the end, as base/accuracy, tuned/accuracy


@contextmanager
def tracked_run(recipe, run_dir: Path, main: bool, name: str | None = None) -> Iterator[tracking.Tracking]:
    """`name`: a child run inside this folder's run (a continual experience), with its own TensorBoard folder.
    Without it, the run is named train.run_name, else after its folder (a seed's or stage's folder inside a
    parent run becomes a child run by being opened inside it)."""
    cfg = recipe.train
    events = run_dir / tracking.TENSORBOARD_DIR
    with tracking.tracked(
        list(cfg.report_to),
        cfg.experiment,
        name or cfg.run_name or run_dir.name,
        cfg.tags,
        events / _slug(name) if name else events,
        recipe.model_dump(mode="json"),
        main,
    ) as run:
        yield run


def log_outcome(run: tracking.Tracking, run_dir: Path, metrics: dict) -> None:
    """What the finished run measured (its metrics.json: every kind of run writes one), and its files."""
    if not run.trackers:
        return
    values = {}
    for block in SUMMARY:
        if isinstance(metrics.get(block), dict):
            values.update({f"{block}/{k}": v for k, v in dotted(metrics[block]).items()})
    train = {k: v for k, v in (metrics.get("train") or {}).items() if k != "history"}
    values.update({f"train/{k}": v for k, v in train.items()})
    values.update({f"memory/{k}": v for k, v in (metrics.get("memory") or {}).items()})
    run.log(values)
    files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    run.log_artifacts(files + sorted((run_dir / "plots").glob("*.png")))


def _slug(name: str) -> str:
    """A folder name from a user's experience name: no separators, no leading dots (stays inside the run)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"
