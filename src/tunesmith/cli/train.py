"""`tunesmith train` and `tunesmith quickstart`."""

from __future__ import annotations

import os
import signal
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import TunesmithError
from .app import DataRoot, Sets, app, friendly, out, use_data_root
from .tables import print_comparison


@app.command()
@friendly
def train(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML file (with --resume: optional).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Run directory to write.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in the output directory.")] = False,
    seeds: Annotated[
        Optional[int], typer.Option(help="Repeat over N seeds and report mean ± std (train.seeds).")
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            "--resume",
            metavar="RUN_DIR",
            help="Continue an interrupted run from its last checkpoint (staged runs: from "
            "the stage that did not finish). The recipe is read from RUN_DIR unless given.",
        ),
    ] = None,
    compare_direct: Annotated[
        bool,
        typer.Option(
            "--compare-direct", help="Staged recipe: also train the last stage alone from the base model (the control)."
        ),
    ] = False,
    nproc: Annotated[
        Optional[int],
        typer.Option(
            "--nproc",
            min=1,
            help="Data-parallel over N processes on this machine (torchrun: gloo on CPUs, NCCL on "
            "GPUs). train.batch_size is per process; the effective batch is reported.",
        ),
    ] = None,
    set_: Sets = None,
    data_root: DataRoot = None,
):
    """Fine-tune a model as the recipe says; write the run directory; print base vs tuned."""
    from ..pipeline import run
    from ..recipe import load_recipe
    from ..runs.rundir import RECIPE_FILE

    overrides = [*(set_ or []), *([f"train.seeds={seeds}"] if seeds else [])]
    use_data_root(data_root)
    if os.environ.get("TUNESMITH_STOP_ON_SIGINT") == "1":  # started by the dashboard: its Stop is a SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if recipe is None and resume is None:
        raise TunesmithError(
            "Missing the recipe: `tunesmith train RECIPE.yaml` (or `tunesmith train --resume RUN_DIR`)."
        )
    if resume is not None and output is not None and output.resolve() != resume.resolve():
        raise TunesmithError(f"--resume {resume} continues in that folder; drop -o {output}.")
    if resume is not None and recipe is None and not (resume / RECIPE_FILE).is_file():
        raise TunesmithError(
            f"--resume: {resume} holds no run to continue (no {RECIPE_FILE}). Start it without --resume."
        )
    loaded = load_recipe(recipe if recipe is not None else resume / RECIPE_FILE, overrides)
    if nproc and nproc > 1:
        from .launch import launch

        raise typer.Exit(launch(nproc, loaded, recipe, resume, output, overwrite, compare_direct, overrides))
    result = run(
        loaded,
        output_dir=resume or output,
        overwrite=overwrite,
        resume=resume is not None,
        compare_direct=compare_direct,
    )
    from ..engine.hardware import process_state

    if process_state().is_main_process:
        print_comparison(result.metrics)
        out.print(f"Run written to {result.run_dir} (report: {result.run_dir / 'report.md'})")


@app.command()
@friendly
def quickstart(
    output: Annotated[Path, typer.Option("-o", "--output", help="Run directory to write.")] = Path("runs/quickstart"),
):
    """Fine-tune MiniLM on a small shipped sample (comment sentiment) and print base vs tuned."""
    recipe = resources.files("tunesmith") / "samples" / "quickstart.yaml"
    out.print(f"Recipe: {recipe}")
    train(Path(str(recipe)), output=output, overwrite=True, set_=[])
