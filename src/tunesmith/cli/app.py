"""The `tunesmith` app, its consoles and the one error handler every command wears. Every command turns
bad input into one clear message and exit code 2; commands parse, call the library, print."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import TunesmithError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Fine-tune pre-trained language models on your own data."
)
out = Console()
err = Console(stderr=True)

# `tunesmith --help` lists the commands in panels, in the order a new user meets them (registration order is
# the order the modules are imported in, which says nothing to a reader); in a panel typer lists single commands
# before command groups. Every command is placed: a test holds it.
HELP_PANELS = {
    "Start": ("quickstart", "env", "recipes", "models"),
    "Train": ("train", "sweep", "data", "recipe"),
    "Use a tuned model": ("eval", "predict", "generate", "chat", "export", "serve"),
    "Operate over time": ("ui", "monitor", "update", "loop", "runs"),
}
_HELP_ORDER = [name for names in HELP_PANELS.values() for name in names]


def command_name(info) -> str:
    """A registered command's or group's name as typed (typer derives a missing one from the function)."""
    return info.name or info.callback.__name__.replace("_", "-")


def arrange_help(typer_app: typer.Typer) -> None:
    """Sort the registered commands and groups by HELP_PANELS and put each in its panel."""
    panel_of = {name: panel for panel, names in HELP_PANELS.items() for name in names}
    for infos in (typer_app.registered_commands, typer_app.registered_groups):
        for info in infos:
            info.rich_help_panel = panel_of.get(command_name(info))
            doc = getattr(info.callback, "__doc__", None) if info.callback else None
            if doc and not getattr(info, "short_help", True):  # the docstring's first paragraph, its lines joined
                info.short_help = " ".join(doc.strip().split("\n\n")[0].split())
        infos.sort(key=lambda info: _HELP_ORDER.index(command_name(info)) if command_name(info) in panel_of else 99)


Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace the -o file if it exists (never the input file).")
]
Sets = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a recipe field, e.g. --set train.lr=3e-5 (repeatable).")
]

DataRoot = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--data-root",
        help="Where relative data paths are also looked up, and a local mirror of Hub datasets: data.hub org/name "
        "is read from DIR/org/name/ or DIR/name/ (train.csv, test.csv, ..., or `tunesmith data mirror`'s copy) "
        "instead of the Hub. Repeatable: the first folder that holds it wins (same as TUNESMITH_DATA_ROOT).",
    ),
]


def use_data_root(roots: list[Path] | None) -> None:
    """--data-root for this process and the processes it starts (torchrun workers, the dashboard's runs)."""
    if roots:
        for root in roots:
            if not root.is_dir():
                raise TunesmithError(f"--data-root {root} is not a folder.")
        os.environ["TUNESMITH_DATA_ROOT"] = os.pathsep.join(str(root.resolve()) for root in roots)


HUB_HINT = (
    "A Hub id (owner/name) is downloaded once into the Hugging Face cache. Without internet, point model.name at a "
    "model folder (`hf download OWNER/NAME --local-dir DIR` where there is internet), or use a built-in model "
    "(`tunesmith models list`); HF_HUB_OFFLINE=1 reads the cache alone, without waiting on the network."
)


def friendly(fn):
    """Show TunesmithError (and the system's OSError) as a message, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunesmithError as exc:
            # the message is text (a label such as [urgent], an extra such as tunesmith[serve]), not markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted (an unfinished run continues with `tunesmith train --resume RUN_DIR`)")
            raise typer.Exit(130) from None
        except OSError as exc:  # disk full, permissions, read-only folders: the system's words, no traceback
            if exc.errno is None and "huggingface.co" in str(exc):  # transformers could not fetch a Hub id
                err.print(
                    f"[bold red]error:[/] {escape(str(exc).strip())}\n{HUB_HINT}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(2) from None
            where = f" ({escape(str(exc.filename))})" if exc.filename else ""
            err.print(
                f"[bold red]error:[/] cannot read or write{where}: {escape(str(exc.strerror or exc))}. Check free "
                "disk space and "
                "the folder's permissions.",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return wrapper
