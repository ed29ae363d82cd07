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
    data: Annotated[
        Optional[Path], typer.Option("--data", help="New labeled data (same columns as the run's).")
    ] = None,
    from_feedback: Annotated[
        Optional[Path],
        typer.Option(
            "--from-feedback",
            metavar="DIR",
            help="Train on the feedback collected by `tunesmith serve --collect DIR` instead; the new version is "
            "promoted only if it beats the current one on held-out feedback and forgets no more than "
            "method.max_forgetting.",
        ),
    ] = None,
    min_examples: Annotated[
        int, typer.Option(help="--from-feedback: the least new feedback an update waits for.", min=2)
    ] = 50,
    holdout: Annotated[
        float, typer.Option(help="--from-feedback: share of the feedback held out for the gate.", min=0.05, max=0.5)
    ] = 0.2,
    model: Annotated[
        Optional[str], typer.Option(help="--from-feedback: the served model name (default: the run's folder name).")
    ] = None,
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
            help="Refuse the update if the old experiences' score (accuracy; micro-F1, entity F1, R² or answer-"
            "token accuracy for those tasks) drops by more than this (e.g. 0.02). With --from-feedback: the gate's "
            "forgetting budget (default: the recipe's method.max_forgetting, 0.01).",
        ),
    ] = None,
):
    """Train version N+1 from the current version on new data, keeping what it knew (the run's strategy)."""
    from ..errors import TunesmithError
    from ..methods.continual import updatable, update_run

    if (data is None) == (from_feedback is None):
        raise TunesmithError("Give the new data: --data FILE, or --from-feedback DIR (not both).")
    if from_feedback is not None:
        from ..methods.continual_feedback import update_from_feedback

        say_decision(
            update_from_feedback(run_dir, from_feedback, min_examples, holdout, model, max_forgetting=max_forgetting)
        )
        return
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


def say_decision(metrics: dict) -> None:
    """The gate's two numbers and its decision, as `update --from-feedback` and `loop` print them."""
    gate = metrics["gate"]
    if gate["new_before"] is None:  # --no-gate: nothing was compared
        out.print(f"version {metrics['continual']['version']} is current (no gate).")
        return
    out.print(
        f"held-out feedback ({gate['heldout_rows']} rows): {gate['metric']} {gate['new_before']:.4f} (current) -> "
        f"{gate['new_after']:.4f} (new); "
        f"data it knew before: {gate['old_before']:.4f} -> {gate['old_after']:.4f} "
        f"(forgetting {gate['forgetting']:+.4f}, budget {gate['max_forgetting']})"
    )
    if gate["promoted"]:
        out.print(f"version {metrics['continual']['version']} is current (promoted).")
    else:
        out.print(
            f"not promoted: {'; '.join(gate['reasons'])}. Version {metrics['continual']['version']} stays current; "
            f"the candidate is kept in {metrics['candidate']}."
        )


@app.command()
@friendly
def monitor(
    folder: Annotated[Path, typer.Argument(help="The folder given to `tunesmith serve --collect`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
):
    """What the served models answered (from the collected requests): per model and version, requests, the
    predicted-label shares, mean confidence, and how much of the feedback agreed with the answers."""
    import json

    from rich.table import Table

    from ..runs.collect import Store
    from .tables import plain

    rows = Store(folder, readonly=True).summary()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "version", "requests", "predicted labels", "mean confidence", "far", "feedback", "agreed")
    for r in rows:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["label_shares"].items())
        table.add_row(
            *map(
                plain,
                (
                    r["model"],
                    str(r["version"]),
                    str(r["requests"]),
                    shares or "—",
                    "—" if r["mean_confidence"] is None else f"{r['mean_confidence']:.3f}",
                    "—" if r.get("far_from_training") is None else f"{r['far_from_training']:.1%}",
                    str(r["feedback"]),
                    "—" if r["feedback_agreement"] is None else f"{r['feedback_agreement']:.1%}",
                ),
            )
        )
    out.print(table if rows else f"No requests recorded in {folder} yet.")


@app.command()
@friendly
def loop(
    run_dir: Annotated[
        Path,
        typer.Argument(help="The continual or generation run that `tunesmith serve RUN --collect DIR` serves."),
    ],
    collect: Annotated[Path, typer.Option("--collect", metavar="DIR", help="The serve's --collect folder.")],
    every: Annotated[int, typer.Option(help="Update after this many new feedback rows.", min=2)] = 500,
    holdout: Annotated[
        float, typer.Option(help="Share of the feedback held out for the gate.", min=0.05, max=0.5)
    ] = 0.2,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the feedback.", min=0.1)] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="One look (and at most one update), then stop.")] = False,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="--no-gate promotes every new version (not recommended).")
    ] = True,
    model: Annotated[
        Optional[str], typer.Option(help="The served model name (default: the run's folder name).")
    ] = None,
    max_forgetting: Annotated[
        Optional[float],
        typer.Option(
            "--max-forgetting", min=0.0, help="The gate's forgetting budget (default: method.max_forgetting, 0.01)."
        ),
    ] = None,
):
    """Collect -> update -> gate -> swap, unattended: every EVERY new feedback rows, train the next version on
    them; a promoted version is what the server (watching the run) answers with next. Safe to stop and start
    again: feedback counts as used only once its update has ended, and two updates never run at once."""
    import time

    from ..errors import TunesmithError
    from ..methods.continual_feedback import pending, update_from_feedback

    while True:
        rows, _ = pending(run_dir, collect, model)
        if len(rows) >= every:
            out.print(f"{len(rows)} new feedback rows: training the next version")
            try:
                say_decision(update_from_feedback(run_dir, collect, every, holdout, model, gate, max_forgetting))
            except TunesmithError as err:  # another update running, data refused: say it and look again later
                out.print(f"update not made: {err}")
        if once:
            return
        time.sleep(poll)
