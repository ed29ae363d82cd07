"""Several runs side by side: the recipe keys that differ, then base and tuned metrics, time and memory.
The CLI prints it (`tunesmith runs compare`); anything else that shows runs can use the same table."""

from __future__ import annotations

from pathlib import Path

from ..engine.metrics import shown_keys
from ..errors import TunesmithError
from ..recipe import dotted
from . import rundir

MISSING = "—"


def flatten(tree) -> dict[str, str]:
    """A recipe as dotted keys -> printed values (`train.lr` -> '0.0002'); lists stay whole."""
    return {key: _text(value) for key, value in dotted(tree).items()} if isinstance(tree, dict) else {}


def section_name(section, default: str) -> str:
    """A recipe section's name: `model: {name: x}` or the shorthand `model: x`."""
    if isinstance(section, dict):
        return str(section.get("name", default))
    return str(section) if section is not None else default


def _text(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def compare(run_dirs: list[Path]) -> dict:
    """{"runs": names, "status": [...], "recipe": {key: values} (only keys that differ), "metrics": {row: values}}."""
    if len(run_dirs) < 2:
        raise TunesmithError("runs compare: give two or more run directories.")
    statuses = [rundir.read_status(d) for d in run_dirs]
    for run_dir, status in zip(run_dirs, statuses):
        if status is None:
            raise TunesmithError(f"runs compare: {run_dir} is not a tunesmith run directory (no {rundir.RUN_FILE}).")
    recipes = [flatten(rundir.read_yaml(d / rundir.RECIPE_FILE)) for d in run_dirs]
    keys = sorted(set().union(*recipes))
    differ = {k: [r.get(k, MISSING) for r in recipes] for k in keys if len({r.get(k, MISSING) for r in recipes}) > 1}
    metrics = [rundir.read_json(d / rundir.METRICS_FILE) for d in run_dirs]
    return {
        "runs": [_name(d, run_dirs) for d in run_dirs],
        "status": statuses,
        "recipe": differ,
        "metrics": _metric_rows(metrics),
    }


def _name(run_dir: Path, all_dirs: list[Path]) -> str:
    """The folder's name, or its path where two runs share a name."""
    same = sum(d.name == run_dir.name for d in all_dirs) > 1
    return str(run_dir) if same else run_dir.name


def _metric_rows(metrics: list[dict]) -> dict[str, list[str]]:
    tuned = [m.get("tuned") if isinstance(m.get("tuned"), dict) else {} for m in metrics]
    base = [m.get("base") if isinstance(m.get("base"), dict) else {} for m in metrics]
    rows: dict[str, list[str]] = {}
    for key in shown_keys(*tuned):
        rows[f"{key} (base)"] = [_number(b.get(key)) for b in base]
        rows[f"{key} (tuned)"] = [_number(t.get(key)) for t in tuned]
    train = [m.get("train") if isinstance(m.get("train"), dict) else {} for m in metrics]
    rows["evaluated on"] = [f"{m.get('eval_set', MISSING)} ({m.get('eval_size', MISSING)})" for m in metrics]
    rows["training time (s)"] = [_number(t.get("runtime_s"), 1) for t in train]
    rows["samples/s"] = [_number(t.get("samples_per_s"), 1) for t in train]
    rows["epochs (kept)"] = [f"{t.get('epochs', MISSING)} ({t.get('best_epoch', MISSING)})" for t in train]
    rows["peak memory (MB)"] = [
        _number((m.get("memory") if isinstance(m.get("memory"), dict) else {}).get("peak_rss_mb"), 0) for m in metrics
    ]
    return rows


def _number(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else MISSING
