"""tunesmith speaks through `logging`, under the "tunesmith" logger: the library never prints.

The CLI shows these records with rich (`cli/output.py`); a Python user sees warnings on stderr through
Python's last-resort handler and turns on progress lines with `tunesmith.log.show()` (or their own
`logging` setup). A record with `extra={"rule": True}` is a section heading (a stage, an experience).

Training progress goes through a reporter so that the loop does not depend on how it is shown: the
default logs a line every tenth of the run; the CLI installs a live progress bar.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

ROOT = "tunesmith"


class OnceFilter(logging.Filter):
    """Passes each distinct warning once: a finding the data check and a reader both make, or one repeated per
    seed or stage, is said once. Remembers the last MEMORY warnings, so a long-lived server that logs a new text
    per request does not grow without bound."""

    MEMORY = 1000

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen[message] = None
        if len(self.seen) > self.MEMORY:
            del self.seen[next(iter(self.seen))]
        return True


def show(level: int = logging.INFO, stream=None) -> logging.Handler:
    """Plain-text output of tunesmith's messages at `level` and above (for scripts and notebooks)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    install(handler, level)
    return handler


def install(handler: logging.Handler, level: int) -> None:
    """Make `handler` the one handler of the tunesmith logger (a second call replaces the first), saying each
    warning once."""
    handler.addFilter(OnceFilter())
    logger = logging.getLogger(ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class Progress(Protocol):
    def update(self, completed: int, loss: float, samples_per_s: float) -> None: ...


ProgressFactory = Callable[[str, int, int], AbstractContextManager[Progress]]


class _LoggedProgress(AbstractContextManager):
    """A line every tenth of the run, at INFO."""

    def __init__(self, name: str, total: int, completed: int) -> None:
        self.name, self.total, self.next = name, max(total, 1), completed
        self.logger = logging.getLogger(f"{ROOT}.progress")

    def __exit__(self, *exc) -> None:
        return None

    def update(self, completed: int, loss: float, samples_per_s: float) -> None:
        if completed >= self.next or completed == self.total:
            self.logger.info(
                "%s: step %d/%d, loss %.4f, %.0f samples/s", self.name, completed, self.total, loss, samples_per_s
            )
            self.next = completed + max(self.total // 10, 1)


_factory: ProgressFactory = _LoggedProgress


def set_progress(factory: ProgressFactory | None) -> None:
    """How training progress is shown from now on (None: back to log lines)."""
    global _factory
    _factory = factory or _LoggedProgress


def progress(name: str, total: int, completed: int = 0, enabled: bool = True) -> AbstractContextManager[Progress]:
    """The reporter for one training run; `enabled=False` (a non-main process) reports nothing."""
    return _factory(name, total, completed) if enabled else _Silent()


class _Silent(AbstractContextManager):
    def __exit__(self, *exc) -> None:
        return None

    def update(self, completed: int, loss: float, samples_per_s: float) -> None:
        return None


def reader_warnings(warnings: list[str], data_check: str) -> None:
    """What a data reader noticed (duplicates, train/test overlap, unseen labels). Said only when the data
    check did not run (`train.data_check: off`): when it ran, it said the same in its own words first."""
    if data_check == "off":
        for warning in warnings:
            logging.getLogger(ROOT).warning(warning)
