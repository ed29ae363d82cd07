"""Write a DataFrame back in the format its file name asks for (predictions keep the input's format), and the
rule for every file a command writes at a user's -o: never over the input, never over an existing file unless
asked, and never a partial file (written beside, then moved into place)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import TunesmithError
from .readers import SUFFIXES


def claim_output(path: str | Path, overwrite: bool, inputs=(), table: bool = False) -> Path:
    """The path a command may write, checked before any work: an input file is never replaced, even with
    --overwrite (`predict RUN data.csv -o data.csv` would lose the data), nor any existing file without it."""
    path = Path(path)
    if table and path.suffix.lower() not in SUFFIXES:
        raise TunesmithError(
            f"Cannot write {path}: unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}."
        )
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise TunesmithError(
                f"-o {path} is the input file {source}; tunesmith never writes over its input. Choose another -o."
            )
    if path.is_dir():
        raise TunesmithError(f"-o {path} is a folder; give a file name (its extension picks the format).")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise TunesmithError(f"-o {path} already exists; tunesmith does not replace it unless you pass --overwrite.")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@contextmanager
def written_whole(path: Path):
    """Yield a temporary path beside `path`; it replaces `path` only when the block ends without an error, so a full
    disk or a Ctrl-C never leaves half a file (nor a temporary one) where the user looks."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)  # a link at `path` is replaced, never followed
    except OSError as err:
        raise TunesmithError(f"Cannot write {path}: {err.strerror or err}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TunesmithError(
            f"Cannot write {path}: unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}."
        )
    with written_whole(path) as tmp:
        if fmt in ("csv", "tsv"):
            frame.to_csv(tmp, index=False, sep="," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif fmt == "json":
            frame.to_json(tmp, orient="records", force_ascii=False, indent=1)
        else:
            frame.to_parquet(tmp, index=False)
