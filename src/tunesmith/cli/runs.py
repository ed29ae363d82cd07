"""`tunesmith runs`: what the run directories under a folder hold, runs side by side, a continual run's versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from .app import app, friendly, out
from .tables import plain

runs_app = typer.Typer(no_args_is_help=True, help="Inspect run directories.")
app.add_typer(runs_app, name="runs")

STATUS_STYLE = {"finished": "green", "interrupted": "yellow", "failed": "red", "running": "cyan", "pruned": "magenta"}


@runs_app.command("list")
@friendly
def list_runs(
    folder: Annotated[Path, typer.Argument(help="A folder of run directories (or one run directory).")] = Path("runs"),
):
    """Every run under FOLDER: finished, running, interrupted (resumable) or failed, with its headline metric."""
    from ..errors import TunesmithError
    from ..runs import rundir as runs

    if not folder.is_dir():
        raise TunesmithError(
            f"{folder} is not a folder. Pass the folder that holds your run directories (default: runs)."
        )
    found = sorted(
        {p.parent for p in folder.glob("*/" + runs.RUN_FILE)}
        | ({folder} if (folder / runs.RUN_FILE).is_file() else set())
    )
    rows = [_row(run_dir) for run_dir in found]
    table = Table("run", "status", "method", "model", title=plain(str(folder)))
    table.add_column("base -> tuned", no_wrap=True)  # one figure pair, read across
    for row in rows:
        table.add_row(*map(plain, row[:-1]))
    out.print(table if found else f"No run directories under {folder}.")
    # notes under the table, a line each: in a column a resume command wraps past copying on a narrow terminal
    for row in rows:
        if row[-1]:
            out.print(plain(f"{row[0]}: {row[-1]}"), soft_wrap=True)


def _row(run_dir: Path) -> tuple[str | Text, ...]:
    """One run's line; a run whose files are damaged is listed as such, never stops the listing."""
    from ..engine.metrics import headline
    from ..errors import TunesmithError
    from ..runs import rundir as runs
    from ..runs.compare import section_name

    status = runs.read_status(run_dir)
    try:
        recipe = runs.read_yaml(run_dir / runs.RECIPE_FILE)
    except TunesmithError:
        return run_dir.name, Text("damaged", style="red"), "", "", "", f"{runs.RECIPE_FILE} is not a recipe"
    shown = headline(runs.read_json(run_dir / runs.METRICS_FILE)) if status == "finished" else ""
    note = {
        "interrupted": f"tunesmith train --resume {run_dir}",
        "failed": runs.read_json(run_dir / runs.RUN_FILE).get("error", ""),
        "damaged": f"{runs.RUN_FILE} {runs.json_problem(run_dir / runs.RUN_FILE)}",
    }
    return (
        run_dir.name,
        Text(str(status), style=STATUS_STYLE.get(status, "red")),
        _method(recipe),
        section_name(recipe.get("model"), ""),
        shown,
        str(note.get(status, ""))[:300],
    )


def _method(recipe: dict) -> str:
    """The method, or a staged run's methods in order (domain_adaptation -> supervised)."""
    from ..runs.compare import section_name

    top, stages = section_name(recipe.get("method"), "supervised"), recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        return top
    return " -> ".join(section_name(s.get("method"), top) if isinstance(s, dict) else top for s in stages)


@runs_app.command("compare")
@friendly
def compare_runs(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON (for scripts).")] = False,
):
    """Runs side by side: the recipe keys that differ (only those), base and tuned metrics, time and memory."""
    import json

    from ..runs.compare import compare

    table = compare(run_dirs)
    if as_json:
        print(json.dumps(table, indent=2))
        return
    columns = [plain(f"{name}\n({status})") for name, status in zip(table["runs"], table["status"])]
    recipe = Table(title="recipe: the keys that differ")
    for column in ["recipe key", *columns]:
        recipe.add_column(column, overflow="fold")  # paths differ at their ends: show them whole
    for key, values in table["recipe"].items():
        recipe.add_row(*map(plain, (key, *values)))
    out.print(recipe if table["recipe"] else "The recipes are the same.")
    metrics = Table(title="results")
    for column in ["metric", *columns]:
        metrics.add_column(column)
    for key, values in table["metrics"].items():
        metrics.add_row(*map(plain, (key, *values)))
    out.print(metrics)


@runs_app.command("versions")
@friendly
def versions(
    run_dir: Annotated[Path, typer.Argument(help="A continual run directory.")],
    rollback: Annotated[Optional[int], typer.Option(help="Make version N current again.")] = None,
):
    """List a continual run's versions with their accuracies; --rollback N makes version N current."""
    from ..methods.continual import list_versions
    from ..methods.continual import rollback as do_rollback

    if rollback is not None:
        do_rollback(run_dir, rollback)
        out.print(f"version {rollback} is current again ({run_dir}/model).")
    current, rows = list_versions(run_dir)
    table = Table("version", "experience", "labels", "mean accuracy", "per experience", title=str(run_dir))
    for r in rows:
        mark = " (current)" if r["version"] == current else ""
        cells = (
            f"v{r['version']}{mark}",
            str(r["experience"]),
            str(r["labels"]),
            "n/a" if r["mean_accuracy"] is None else f"{r['mean_accuracy']:.4f}",
            " ".join(f"{a:.3f}" for a in r["accuracies"]),
        )
        table.add_row(*map(plain, cells))
    out.print(table)


@runs_app.command("rollback")
@friendly
def rollback_run(
    run_dir: Annotated[Path, typer.Argument(help="A continual run directory.")],
    to: Annotated[
        Optional[int], typer.Option("--to", help="The version to make current (default: the one before).")
    ] = None,
):
    """Make the previous version (or --to N) current again; a server serving the run follows within seconds."""
    from ..errors import TunesmithError
    from ..methods.continual import read_state
    from ..methods.continual import rollback as do_rollback

    state = read_state(run_dir, "rollback is for method: continual runs.")
    lineage = state["lineage"]
    if to is None:
        if len(lineage) < 2:
            raise TunesmithError(f"{run_dir} is at its first version; there is none before it.")
        to = lineage[-2]
    do_rollback(run_dir, to)
    out.print(f"version {to} is current again ({run_dir}/model).")
