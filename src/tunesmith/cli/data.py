"""`tunesmith data check`: the pre-flight report on a recipe's data (or one data file) before training; `tunesmith
data mirror`: a Hub dataset saved for machines without internet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markdown import Markdown

from .app import DataRoot, Overwrite, Sets, app, err, friendly, out, use_data_root

data_app = typer.Typer(
    no_args_is_help=True, help="Check training data before paying for a run; mirror Hub datasets for offline machines."
)
app.add_typer(data_app, name="data")

DEFAULT_MODEL = {
    "classification": "minilm-l6",
    "regression": "minilm-l6",
    "token_classification": "minilm-l6",
    "generation": "smollm2-135m-instruct",
}


# another task's usual columns (errors.other_task) -> the recipe a data file is checked under without --task
GUESSED = {
    "generation": {},
    "token_classification": {},
    "generation with method: preference": {"method": {"name": "preference"}},
}


def _guessed_task(source: Path) -> tuple[dict, str]:
    """(recipe keys, task) a data file is checked as without --task: classification, unless its columns are
    another task's usual ones (prompt/response, messages, tokens/tags, chosen/rejected) or its labels sit in a
    `labels` column (multi-label when they are lists or joined); what was chosen is then said."""
    from ..data.readers import iter_table
    from ..errors import other_task

    if not source.is_file():  # a Hub id or a missing file: the check itself says what it is
        return {}, "classification"
    frame = next(iter(iter_table(source, "data", rows=500)))
    columns = list(map(str, frame.columns))
    found = None if {"text", "label"} <= set(columns) else other_task(columns)  # classification's own columns win
    if found is not None:
        what, task = found
        err.print(f"Checked as {task} data: its columns look like {what} (--task checks it as another task's).")
        return GUESSED[task], task.split()[0]
    if "labels" in columns and "label" not in columns:
        data, what = _label_sets(frame["labels"].tolist())
        err.print(f"Checked as {what} (--task and --set data.* check it otherwise).")
        return {"data": data}, "classification"
    return {}, "classification"


def _label_sets(values: list) -> tuple[dict, str]:
    """(data keys, what they read) for a `labels` column: lists of labels, labels joined by a separator, or one
    label a row."""
    from ..check.classification import joined_by
    from ..data.columns import list_cell

    cells = [v for v in values if v is not None and v == v]  # NaN: an empty cell
    if any(isinstance(v, (list, tuple)) or hasattr(v, "tolist") or list_cell(str(v)) is not None for v in cells):
        return {"label_column": "labels", "multi_label": True}, "multi-label data: lists of labels in 'labels'"
    sep = joined_by(cells)
    if sep:
        return {"label_column": "labels", "label_separator": sep}, f"multi-label data: labels joined by {sep!r}"
    return {"label_column": "labels"}, "classification data: one label a row in 'labels'"


@data_app.command("check")
@friendly
def check(
    source: Annotated[Path, typer.Argument(help="A recipe YAML, or a data file.")],
    task: Annotated[
        Optional[str],
        typer.Option(
            help="With a data file: classification, regression, token_classification or generation (default: "
            "what its columns are for)."
        ),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="With a data file: the model whose tokenizer measures lengths.")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Also write the report here (.md and .json).")
    ] = None,
    overwrite: Overwrite = False,
    set_: Sets = None,
    data_root: DataRoot = None,
):
    """Columns, row counts, labels, duplicates, train/eval overlap, conflicting labels, token lengths and
    truncation, chat-template masking. Exit code 1 when training would fail or learn nothing."""
    from ..check import check_recipe
    from ..check.report import to_markdown, write
    from ..errors import TunesmithError
    from ..recipe import load_recipe

    use_data_root(data_root)
    if source.suffix.lower() in (".yaml", ".yml"):
        if task or model:
            raise TunesmithError(
                "--task and --model apply to a data file; a recipe names its own (use --set model.name=...)."
            )
        recipe = load_recipe(source, set_ or [])
    else:
        extra, task = ({}, task) if task else _guessed_task(source)
        if task not in DEFAULT_MODEL:
            raise TunesmithError(f"--task must be one of {', '.join(DEFAULT_MODEL)}, not {task!r}.")
        data = {"train": os.path.abspath(source), **extra.pop("data", {})}
        recipe = load_recipe(
            {"task": task, "model": {"name": model or DEFAULT_MODEL[task]}, "data": data, **extra}, set_ or []
        )
    from ..data.hub import materialize

    report = check_recipe(materialize(recipe))
    out.print(Markdown(to_markdown(report)))
    if output:
        if output.exists() and not output.is_dir():
            raise TunesmithError(f"-o {output} is a file; data check writes a folder (data_check.md and .json).")
        output.mkdir(parents=True, exist_ok=True)
        write(output, report, overwrite)
    if not report.ok:
        err.print(f"[bold red]{len(report.errors)} error(s):[/] training would fail or learn nothing.")
        raise typer.Exit(1)


@data_app.command("mirror")
@friendly
def mirror(
    dataset: Annotated[str, typer.Argument(help="A Hugging Face Hub dataset id (org/name).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The mirror's root folder (created if missing).")],
    config: Annotated[Optional[str], typer.Option(help="The dataset's configuration (subset).")] = None,
    revision: Annotated[Optional[str], typer.Option(help="A branch, tag or commit (default: the latest).")] = None,
) -> None:
    """Save a Hub dataset for machines without internet: run this where the Hub is reachable, copy the folder over,
    and train there with --data-root FOLDER (recipes name the dataset with data.hub as before)."""
    from ..data.hub import save_mirror

    folder = save_mirror(dataset, output, config, revision)
    out.print(f"saved {dataset}{f' ({config})' if config else ''} to {folder}; offline: --data-root {output}")
