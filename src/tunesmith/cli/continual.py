"""CLI for continual runs: `update` trains the next version on new data (`runs versions` lists them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, friendly, out


@app.command()
@friendly
def update(
    run_dir: Annotated[Path, typer.Argument(help="A finished continual run directory.")],
    data: Annotated[Path, typer.Option("--data", help="New labeled data (same columns as the run's).")],
    validation: Annotated[
        Optional[Path], typer.Option(help="Validation file for the new data (default: a split of it).")
    ] = None,
    test: Annotated[
        Optional[Path], typer.Option(help="Test file for the new data (default: the validation set).")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of this experience (default: the file name).")] = None,
    max_forgetting: Annotated[
        Optional[float],
        typer.Option(
            "--max-forgetting",
            help="Refuse the update if the old experiences' score (accuracy; micro-F1 or entity F1 for those "
            "tasks) drops by more than this (e.g. 0.02).",
        ),
    ] = None,
):
    """Train version N+1 from the current version on new data, keeping what it knew (the run's strategy)."""
    from ..methods.continual import updatable, update_run
    from ..recipe import DataSection, Experience, load_recipe
    from ..runs.rundir import RECIPE_FILE, read_yaml

    updatable(run_dir)  # a run that cannot be updated says so before its new data is read
    saved = load_recipe(read_yaml(run_dir / RECIPE_FILE)) if (run_dir / RECIPE_FILE).is_file() else None
    base = (saved.data or saved.experiences[-1].data).model_dump() if saved else {}
    section = DataSection.model_validate(
        {
            **base,
            "train": os.path.abspath(data),
            "filter": None,
            "max_train_samples": None,
            "validation": os.path.abspath(validation) if validation else None,
            "test": os.path.abspath(test) if test else None,
        }
    )
    experience = Experience(name=name or data.stem, data=section)
    if saved:  # the same data check as `train`: a file train would refuse is refused here, before any training
        from ..pipeline import preflight

        preflight(saved.model_copy(update={"experiences": [experience], "data": None}))
    metrics = update_run(run_dir, experience, max_forgetting)
    c = metrics["continual"]
    out.print(
        f"version {c['version']} is current: average {c.get('metric', 'accuracy')} {c['average_accuracy']:.4f}, "
        f"BWT {c['bwt']:+.4f}"
    )
