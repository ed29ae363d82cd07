"""`tunesmith recipes list|copy`: the recipes that ship with the package, as starting points for your own."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
    """The recipe as data, and what it does: the first sentence of its opening comment (the line before is
    its command)."""
    import yaml

    text = path.read_text(encoding="utf-8")
    head = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        head.append(line[1:].strip())
    return yaml.safe_load(text) or {}, first_sentence(" ".join(head[1:]))


# a full stop after these is not a sentence's end ("Ben Abacha et al. 2023", "e.g. "Exclusivity"")
_ABBREVIATIONS = ("al.", "e.g.", "i.e.", "incl.", "etc.", "vs.", "cf.")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z-]|\s*$)")


def first_sentence(text: str) -> str:
    for end in _SENTENCE_END.finditer(text):
        if not text[: end.end()].endswith(_ABBREVIATIONS):
            return text[: end.end()]
    return text


@recipes_app.command("list")
def recipes_list():
    """The shipped recipes: task, method, model and what each does."""
    # a line per recipe and its description under it, not a table: five columns leave a description a few
    # characters a line on an 80-column terminal
    for name, path in shipped().items():
        raw, about = _about(path)
        method = raw.get("method") or {}
        model = raw.get("model") or {}
        kind = " · ".join(
            (
                str(raw.get("task", "classification")),
                str(method.get("name", "supervised") if isinstance(method, dict) else method),
                str(model.get("name", "") if isinstance(model, dict) else model),
            )
        )
        out.print(f"[bold]{escape(name)}[/]  [dim]{escape(kind)}[/]")
        wrapped = textwrap.fill(
            about, max(out.width - 4, 40), initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
        )
        out.print(wrapped + "\n", markup=False, highlight=False)
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
