"""`tunesmith sweep`: hyperparameter search over a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import DataRoot, Sets, app, friendly, out, use_data_root


@app.command()
@friendly
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (its sweep: section says what to search).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Sweep folder (run again to continue it).")],
    trials: Annotated[
        Optional[int], typer.Option("--trials", min=1, help="Trials to finish (default: sweep.trials, 12).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=64, help="Trials at once on this machine, the cores split between them.")
    ] = 1,
    storage: Annotated[
        Optional[str],
        typer.Option(
            "--storage",
            help="Optuna storage URL shared by machines working on one study (e.g. postgresql://...); "
            "default: a SQLite file in the sweep folder.",
        ),
    ] = None,
    timeout: Annotated[
        Optional[float], typer.Option("--timeout", min=1, help="Start no new trial after this many seconds.")
    ] = None,
    set_: Sets = None,
    data_root: DataRoot = None,
):
    """Search the recipe's keys with Optuna (TPE, median pruning), then judge the best trial against the defaults
    over seeds on the test set, read once at the end."""
    from ..recipe import load_recipe
    from ..sweep import run_sweep

    use_data_root(data_root)
    summary = run_sweep(load_recipe(recipe, set_ or []), output, trials, jobs, storage, timeout)
    best = summary["best"]
    out.print(
        f"Best trial {best['number']}: validation {summary['metric']} {best['validation']:.4f}"
        + (f", test {best['test']:.4f}" if "test" in best else "")
    )
    out.print(f"Verdict: {summary.get('verdict', 'no test file: judged on validation only')}")
    out.print(f"Report: {output / 'report.md'}; best recipe: {output / 'best_recipe.yaml'}")
