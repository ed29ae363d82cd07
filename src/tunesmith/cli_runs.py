"""`tunesmith runs`: what the run directories under a folder hold, and a continual run's versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .cli import app, friendly, out

runs_app = typer.Typer(no_args_is_help=True, help="Inspect run directories.")
app.add_typer(runs_app, name="runs")

STATUS_STYLE = {"finished": "green", "interrupted": "yellow", "failed": "red", "running": "cyan"}


@runs_app.command("list")
@friendly
def list_runs(folder: Annotated[Path, typer.Argument(help="A folder of run directories (or one run directory).")] = Path("runs")):
    """Every run under FOLDER: finished, running, interrupted (resumable) or failed, with its headline metric."""
    from . import runs
    from .errors import TunesmithError
    if not folder.is_dir():
        raise TunesmithError(f"{folder} is not a folder. Pass the folder that holds your run directories (default: runs).")
    found = sorted({p.parent for p in folder.glob("*/" + runs.RUN_FILE)} | ({folder} if (folder / runs.RUN_FILE).is_file() else set()))
    table = Table("run", "status", "method", "model", "tuned", "note", title=str(folder))
    for run_dir in found:
        status = runs.read_status(run_dir)
        recipe = runs.read_yaml(run_dir / runs.RECIPE_FILE) or {}
        tuned = runs.read_json(run_dir / runs.METRICS_FILE).get("tuned", {}) if status == "finished" else {}
        headline = next((f"{k} {tuned[k]:.4f}" for k in ("f1_macro", "rouge_l", "exact_match", "perplexity", "loss")
                         if isinstance(tuned.get(k), (int, float))), "")
        note = {"interrupted": f"tunesmith train --resume {run_dir}", "failed": runs.read_json(run_dir / runs.RUN_FILE).get("error", "")}
        table.add_row(run_dir.name, f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]", str((recipe.get("method") or {}).get("name", "")),
                      str((recipe.get("model") or {}).get("name", "")), headline, str(note.get(status, ""))[:80])
    out.print(table if found else f"No run directories under {folder}.")


@runs_app.command("versions")
@friendly
def versions(run_dir: Annotated[Path, typer.Argument(help="A continual run directory.")],
             rollback: Annotated[Optional[int], typer.Option(help="Make version N current again.")] = None):
    """List a continual run's versions with their accuracies; --rollback N makes version N current."""
    from .continual_run import list_versions, rollback as do_rollback
    if rollback is not None:
        do_rollback(run_dir, rollback)
        out.print(f"version {rollback} is current again ({run_dir}/model).")
    current, rows = list_versions(run_dir)
    table = Table("version", "experience", "labels", "mean accuracy", "per experience", title=str(run_dir))
    for r in rows:
        mark = " (current)" if r["version"] == current else ""
        table.add_row(f"v{r['version']}{mark}", str(r["experience"]), str(r["labels"]),
                      "n/a" if r["mean_accuracy"] is None else f"{r['mean_accuracy']:.4f}",
                      " ".join(f"{a:.3f}" for a in r["accuracies"]))
    out.print(table)
