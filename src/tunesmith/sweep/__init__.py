"""Hyperparameter search over a recipe (`tunesmith sweep`, `tunesmith.sweep.run_sweep`): Optuna's TPE sampler and
median pruner over the recipe's `sweep.params` (or a default space), every trial an ordinary run folder under
DIR/trials/<n>/, then the best trial and the defaults over seeds on the test set, read once (docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path

from ..recipe import Recipe, load_recipe
from .report import finish
from .study import prepare, run_workers

__all__ = ["run_sweep"]


def run_sweep(
    recipe: Recipe | dict | str | Path,
    output_dir: str | Path,
    trials: int | None = None,
    jobs: int = 1,
    storage: str | None = None,
    timeout: float | None = None,
) -> dict:
    """Search, then judge the best trial against the defaults; returns what sweep.json holds. Run again with the
    same recipe and folder to continue a sweep that was stopped."""
    import importlib.util

    from ..engine.tracking import check_available
    from ..errors import TunesmithError
    from ..runs.tracked import tracked_run

    if importlib.util.find_spec("optuna") is None:
        raise TunesmithError("tunesmith sweep runs on Optuna, which is not installed: pip install 'tunesmith[sweep]'")
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    check_available(recipe.train.report_to)
    setup = prepare(recipe, Path(output_dir), trials, storage, timeout)
    # with trackers, the sweep is the parent run: trials trained in this process become its child runs
    with tracked_run(setup.recipe, setup.out_dir, True) as parent:
        run_workers(setup, jobs)
        summary = finish(setup)
        parent.log({"best/validation": summary["best"]["validation"], **_test(summary)})
    return summary


def _test(summary: dict) -> dict:
    return {"best/test": summary["best"]["test"]} if "test" in summary["best"] else {}
