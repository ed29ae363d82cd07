"""Write a DataFrame back in the format its file name asks for (predictions keep the input's format), and the
rule for every file a command writes at a user's -o: never over the input, never over an existing file unless
asked, and never a partial file (written beside, then moved into place)."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
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
        elif fmt == "xlsx":
            _write_xlsx(frame, tmp)
        else:
            frame.to_parquet(tmp, index=False)


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """One sheet, every text a text: openpyxl (and pandas' to_excel) store a string that starts with '=' as a
    formula, which a spreadsheet would run when the file is opened; input texts come from other people."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append([str(c) for c in frame.columns])
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=_cell_value(value))
            if isinstance(cell.value, str):
                cell.data_type = "s"
            cells.append(cell)
        sheet.append(cells)
    book.save(path)


def _cell_value(value):
    """What a sheet cell can hold: numbers stay numbers; lists and objects as JSON; text without the control
    characters XML 1.0 cannot carry."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        value = json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, ensure_ascii=False)
    return ILLEGAL_CHARACTERS_RE.sub("", str(value))
