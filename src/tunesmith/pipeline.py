"""recipe -> data check -> flow (seeds, stages, or one run) -> method -> session -> run directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .check import check_recipe
from .check.report import as_files
from .data.bad_rows import leaving_out
from .data.hub import materialize
from .data.readers import checking, read_once
from .engine.tracking import check_available
from .errors import TunesmithError
from .flows.seeds import run_seeds
from .flows.single import run_single
from .flows.stages import run_stages
from .recipe import Recipe, load_recipe, with_absolute_paths
from .runs import rundir

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict


def run(
    recipe: Recipe | dict | str | Path,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    compare_direct: bool = False,
    train=None,
    validation=None,
    test=None,
) -> RunResult:
    """Fine-tune per the recipe; returns the run directory and its metrics (also in metrics.json).

    Staged recipes: `resume` skips stages that finished in `output_dir`; `compare_direct` also trains
    the last stage alone from the base model (the control), reported as `direct`. `train`, `validation`,
    `test`: in-memory tables (pandas DataFrame, datasets.Dataset, list of dicts) in place of data files.
    """
    # a Recipe object (what the CLI passes) is already validated: it is not loaded a second time
    if train is not None or validation is not None or test is not None:
        recipe = with_tables(recipe, {"train": train, "validation": validation, "test": test})
    recipe = with_absolute_paths(recipe) if isinstance(recipe, Recipe) else load_recipe(recipe)
    recipe = materialize(recipe)  # data.hub sections: their splits as files
    check_available(recipe.train.report_to)  # a missing tracker package fails before any folder is made
    if compare_direct and not recipe.stages:
        raise TunesmithError("--compare-direct applies to staged recipes (a stages: list); this recipe has none.")
    if resume:
        rundir.check_resumable(Path(output_dir or recipe.output.dir or "."))
    if resume and recipe.train.seeds > 1:
        raise TunesmithError("--resume continues single runs and staged runs; a multi-seed run restarts.")
    # each data file is parsed once, for the data check and the method together; under data_check: warn the
    # readers leave out the rows the check listed as unusable instead of stopping
    with read_once(), leaving_out(recipe.train.data_check == "warn"):
        files = {} if resume else preflight(recipe)
        if recipe.train.seeds > 1:
            return RunResult(*run_seeds(recipe, output_dir, overwrite, files))
        if recipe.stages:
            return RunResult(*run_stages(recipe, output_dir, overwrite, resume, compare_direct, files))
        return RunResult(*run_single(recipe, output_dir, overwrite, resume, files))


def with_tables(recipe, tables: dict) -> dict:
    """The recipe (as a dict) reading the given in-memory tables: each is saved once as a Parquet file."""
    from .data.hub import table_file

    if isinstance(recipe, Recipe):
        raw = recipe.model_dump(mode="json", exclude_unset=True)
    elif isinstance(recipe, dict):
        raw = dict(recipe)
    else:
        raw = load_recipe(recipe).model_dump(mode="json", exclude_unset=True)
    if tables["train"] is None:
        raise TunesmithError("tunesmith.run: validation= and test= tables go with a train= table.")
    if raw.get("stages") or raw.get("experiences"):
        raise TunesmithError("tunesmith.run(train=...) is for single runs; stages and experiences name their files.")
    data = {k: v for k, v in (raw.get("data") or {}).items() if k not in ("hub", "config", "revision", "split_map")}
    for role, table in tables.items():
        data[role] = None if table is None else table_file(table, role)
    raw["data"] = {**data, "source": "in-memory tables"}
    return raw


def preflight(recipe) -> dict[str, str]:
    """The data check before anything is trained: stop on errors (unless train.data_check says otherwise).
    Returns the report as the files the run directory keeps (data_check.md, data_check.json)."""
    if recipe.train.data_check == "off":
        return {}
    from .models.loading import resolve_weights

    resolve_weights(recipe.model.name)  # a misspelt or missing model is said as itself, not as a data problem
    # inside run's read_once(): what the check parses is kept for the method; the check lists every bad row, so
    # it reads strictly even where the method will leave them out
    with checking(), leaving_out(False):
        report = check_recipe(recipe)
    for warning in report.warnings:
        log.warning(f"data check: {warning}")
    if report.errors and recipe.train.data_check == "warn":  # reported, and training goes on without those rows
        for error in report.errors:
            log.warning(f"data check error (train.data_check: warn): {error}")
    if report.errors and recipe.train.data_check == "stop":
        listed = "\n".join(f"  - {e}" for e in report.errors)
        raise TunesmithError(
            f"The data check found {len(report.errors)} problem(s); training would fail or learn nothing:\n"
            f"{listed}\nFix the data (`tunesmith data check RECIPE` prints the full report), or set "
            "train.data_check: warn to leave out the rows training cannot use (empty cells, evaluation labels "
            "training lacks, unreadable rows) and train on the rest; a problem of a whole file still stops."
        )
    log.info(
        f"data check: {'OK' if report.ok else f'{len(report.errors)} error(s)'}, {len(report.warnings)} warning(s)"
    )
    return as_files(report)
