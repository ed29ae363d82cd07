"""How the CLI shows the library's log records and training progress: rich on stderr, so stdout stays
for results (tables, JSON) that a script may read."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import log
from .app import err

LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
PREFIXES = ((logging.ERROR, "[bold red]error:[/] "), (logging.WARNING, "[yellow]warning:[/] "))


class RichHandler(logging.Handler):
    """A warning as `warning: ...`, a heading as a rule, anything else as its plain text. Messages are
    printed without markup: a label such as "[urgent]" is the user's text, not a style."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if getattr(record, "rule", False):
                err.rule(message, style="dim")
                return
            prefix = next((text for level, text in PREFIXES if record.levelno >= level), "")
            if prefix:
                err.print(prefix, end="")
            err.print(message, markup=False, highlight=False, style="dim" if record.levelno < logging.INFO else None)
        except Exception:  # a broken terminal must not stop a training run
            self.handleError(record)


class _Bar(AbstractContextManager):
    def __init__(self, name: str, total: int, completed: int) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[sps]:.0f} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
        )
        self.task = self.bar.add_task(name, total=total, completed=completed, loss=float("nan"), sps=0.0)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def update(self, completed: int, loss: float, samples_per_s: float) -> None:
        self.bar.update(self.task, completed=completed, loss=loss, sps=samples_per_s)


def configure(verbosity: str) -> None:
    """Route the library's messages to the terminal at the chosen verbosity; a progress bar unless quiet."""
    log.install(RichHandler(), LEVELS[verbosity])
    log.set_progress(None if verbosity == "quiet" else _Bar)
