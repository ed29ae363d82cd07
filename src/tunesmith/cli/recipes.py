"""`tunesmith recipes list|copy`: the recipes that ship with the package, as starting points for your own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from ..errors import TunesmithError, did_you_mean
from .app import Overwrite, app, friendly, out

recipes_app = typer.Typer(no_args_is_help=True, help="Shipped recipes: list them, copy one to edit.")
app.add_typer(recipes_app, name="recipes")


def shipped() -> dict[str, Path]:
    """name -> file of every recipe in the package's recipes/ folder."""
    from importlib.resources import files

    folder = Path(str(files("tunesmith") / "recipes"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _about(path: Path) -> tuple[dict, str]:
    import yaml

    text = path.read_text(encoding="utf-8")
    comments = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    return yaml.safe_load(text) or {}, comments[1] if len(comments) > 1 else ""


@recipes_app.command("list")
def recipes_list():
    """The shipped recipes: task, method, model and what each does."""
    table = Table(Column("name", no_wrap=True), "task", "method", "model", "what it does")  # names: never broken
    for name, path in shipped().items():
        raw, about = _about(path)
        method = raw.get("method") or {}
        model = raw.get("model") or {}
        table.add_row(
            name,
            str(raw.get("task", "classification")),
            str(method.get("name", "supervised") if isinstance(method, dict) else method),
            str(model.get("name", "") if isinstance(model, dict) else model),
            about,
        )
    out.print(table)
    out.print("Copy one to edit it: tunesmith recipes copy NAME DIR")


@recipes_app.command("copy")
@friendly
def recipes_copy(
    name: Annotated[str, typer.Argument(help="A name from `tunesmith recipes list`.")],
    folder: Annotated[Path, typer.Argument(help="Where to write NAME.yaml (made if missing).")] = Path("."),
    overwrite: Overwrite = False,
):
    """Write a shipped recipe into FOLDER as NAME.yaml, to edit and train."""
    recipes = shipped()
    if name not in recipes:  # looked up, never joined into a path: a name cannot reach another file
        raise TunesmithError(f"No shipped recipe '{name}'.{did_you_mean(name, recipes)} `tunesmith recipes list`.")
    if folder.exists() and not folder.is_dir():
        raise TunesmithError(f"{folder} is a file; give the folder to write {name}.yaml into.")
    target = folder / f"{name}.yaml"
    if target.exists() and not overwrite:
        raise TunesmithError(f"{target} exists; pass --overwrite to replace it.")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(recipes[name].read_text(encoding="utf-8"), encoding="utf-8")
    raw, _ = _about(recipes[name])
    data = raw.get("data") or {}
    named = [str(data[k]) for k in ("train", "validation", "test") if isinstance(data, dict) and data.get(k)]
    out.print(f"wrote {target}")
    if named:
        out.print(
            f"It reads {', '.join(named)}: relative to {folder}, else under --data-root. "
            f"Use your own files with --set data.train=FILE, or edit the file."
        )
    out.print(f"train it: tunesmith train {target} -o runs/{name}")
