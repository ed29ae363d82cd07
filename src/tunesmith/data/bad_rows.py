"""Rows training cannot use: found, named and, under `train.data_check: warn`, left out.

The data check lists every such row first; the readers then stop on them, or (warn) leave them out with a
warning and train on the rest. A problem of a whole file (a missing column, a single class) always stops."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar

import pandas as pd

from ..errors import TunesmithError

log = logging.getLogger(__name__)

_leave_out: ContextVar[bool] = ContextVar("tunesmith_leave_out_bad_rows", default=False)
_notes: ContextVar[list | None] = ContextVar("tunesmith_left_out_notes", default=None)


@contextmanager
def leaving_out(on: bool = True):
    """Inside (`train.data_check: warn`), a row training cannot use (an empty cell, an evaluation label training
    never saw, an unreadable message list) is left out with a warning instead of stopping the read; the data
    check has listed every such row first. A problem of the whole file (a missing column, one class) still stops."""
    token = _leave_out.set(on)
    try:
        yield
    finally:
        _leave_out.reset(token)


def leaving_out_now() -> bool:
    return _leave_out.get()


@contextmanager
def noting():
    """Inside, the warnings of rows left out are also kept in the list yielded (a cached read says them again)."""
    notes: list[str] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def _warn(message: str) -> None:
    log.warning(message)
    if (notes := _notes.get()) is not None:
        notes.append(message)


def leave_out(problem: TunesmithError) -> bool:
    """True, with the problem logged as rows left out, inside `leaving_out()`; False where the caller must raise."""
    if not _leave_out.get():
        return False
    _warn(f"left out (train.data_check: warn): {problem}")
    return True


def read_usable(frame: pd.DataFrame, read, path: str):
    """read(frame). Where that fails, the rows it fails on are found (by halving: a file without such rows pays
    nothing, one with a few pays about two reads). Inside `leaving_out()` they are left out and the rest read;
    otherwise the error names them all. A problem no single row has (a missing column fails every row) is the
    file's own and stops the read as it is. Rows are named by the frame's index (a chunk of a file counts from
    its first row's)."""
    try:
        return read(frame)
    except TunesmithError as first:
        problem = first
    bad = _failing_rows(frame, read, 0, len(frame))
    if not bad or len(bad) == len(frame):
        raise problem
    shown = ", ".join(str(frame.index[i] + 1) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
    if not _leave_out.get():
        if len(bad) == 1:
            raise problem
        raise TunesmithError(f"{problem} In all, {len(bad)} rows cannot be used: data rows {shown}.") from None
    _warn(f"left out (train.data_check: warn): {path}: {len(bad)} row(s), data rows {shown}. First: {problem}")
    return read(frame.drop(frame.index[bad]).reset_index(drop=True))


def _failing_rows(frame: pd.DataFrame, read, lo: int, hi: int) -> list[int]:
    """Positions in [lo, hi) whose rows `read` refuses on their own."""
    try:
        read(frame.iloc[lo:hi].reset_index(drop=True))
        return []
    except TunesmithError:
        if hi - lo == 1:
            return [lo]
    mid = (lo + hi) // 2
    return _failing_rows(frame, read, lo, mid) + _failing_rows(frame, read, mid, hi)
