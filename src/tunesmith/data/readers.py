"""Read CSV, TSV, JSONL, JSON and Parquet into a DataFrame, with errors that name file and line."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import TunesmithError

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_table(path: str | Path, role: str = "data") -> pd.DataFrame:
    """All rows of a tabular file. `role` ("data.train", ...) is named in errors."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise TunesmithError(
            f"{role}: {path} is a symbolic link that leads nowhere (its target is missing, or the links "
            "form a loop). Point it at the data file itself."
        )
    if not path.exists():
        raise TunesmithError(
            f"{role}: file not found: {path}. Check the path (relative paths resolve against the recipe's folder)."
        )
    if path.is_dir():
        raise TunesmithError(f"{role}: {path} is a folder; point it at a file ({', '.join(sorted(set(SUFFIXES)))}).")
    if not path.is_file():
        raise TunesmithError(
            f"{role}: {path} is not a regular file (a pipe, device or socket); tunesmith reads data files by "
            "name and may read them again (another seed, --resume), so save the data to a file first."
        )
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TunesmithError(
            f"{role}: {path} has an unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}."
        )
    if path.stat().st_size == 0:
        raise TunesmithError(f"{role}: {path} is empty (0 bytes). Fill it with a header and at least one row.")
    try:
        frame = _parse(path, fmt)
    except UnicodeDecodeError as err:
        raise TunesmithError(
            f"{role}: {path} is not UTF-8 text (bad byte at offset {err.start}). Re-save it as UTF-8."
        ) from None
    if frame.empty:
        raise TunesmithError(
            f"{role}: {path} has no data rows (columns found: {', '.join(map(str, frame.columns)) or 'none'})."
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise TunesmithError(
            f"{role}: {path}: column name(s) {', '.join(map(repr, repeated))} appear more than once "
            "(spaces around names are ignored). Rename the columns so each is unique."
        )
    _check_cell_sizes(frame, path, role)
    return frame


_kept: dict | None = None  # (path, stat) -> the data check's parse, inside `read_once()` only
_keeping = False  # True while the data check reads: its parses are kept for the method's reader


@contextmanager
def read_once():
    """Inside this block each data file is parsed once: what the data check read (inside `checking()`) is handed
    to the method's reader, which takes it (nothing holds it after). Keyed by the file's identity, size and mtime,
    so a file changed in between is read again; what no reader took is dropped when the block ends."""
    global _kept
    outer = _kept
    _kept = {} if outer is None else outer
    try:
        yield
    finally:
        _kept = outer


@contextmanager
def checking():
    """The data check's reads, whose parses `read_once()` keeps for the method."""
    global _keeping
    outer, _keeping = _keeping, _kept is not None
    try:
        yield
    finally:
        _keeping = outer


def _parse(path: Path, fmt: str) -> pd.DataFrame:
    if _kept is None:
        return _READERS[fmt](path)
    info = path.stat()
    key = (str(path.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key in _kept:  # the check reading a file twice gets a copy; the method takes the parse
        return _kept[key].copy() if _keeping else _kept.pop(key)
    frame = _READERS[fmt](path)
    if _keeping:
        _kept[key] = frame.copy()  # read_table changes the frame it returns; the method gets the file as read
    return frame


MAX_CELL_CHARS = (
    1_000_000  # ~250k tokens: far past any model's context; usually a broken export (one cell = whole file)
)


def _check_cell_sizes(frame: pd.DataFrame, path: Path, role: str) -> None:
    for col in frame.columns:
        sizes = frame[col].map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(sizes) and sizes.max() > MAX_CELL_CHARS:
            row = int(sizes.idxmax()) + 1
            raise TunesmithError(
                f"{role}: {path}: column '{col}', data row {row} holds {sizes.max():,} characters (limit "
                f"{MAX_CELL_CHARS:,}). "
                "That is usually a broken export (an unclosed quote swallowing the rest of the file); otherwise split "
                "long documents into passages."
            )


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    _check_text(path)
    header = _header(path, sep)
    if len(header) == 1:
        sep = _other_separator(header[0], sep)
        header = _header(path, sep)
    stripped = [h.strip() for h in header]
    repeated = sorted({h for h in stripped if stripped.count(h) > 1})
    if repeated:  # pandas would rename the second one to "text.1" without a word
        raise TunesmithError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once in the header "
            "(spaces around names are ignored). Rename the columns so each is unique."
        )
    try:
        # Everything as strings: a text of "123" stays text, "NA" stays "NA".
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark that would glue itself to the first column name
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        frame.attrs["separator"] = sep
        return frame
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as err:
        raise TunesmithError(
            f"{path}: malformed {'CSV' if sep == ',' else 'TSV'}: {err}. "
            "Check quoting and the number of fields on that line."
        ) from None


def _header(path: Path, sep: str) -> list[str]:
    import csv

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle, delimiter=sep), [])
    except csv.Error:
        return []  # pandas reads it next and names the problem with its line


def _other_separator(header: str, sep: str) -> str:
    """A one-column header such as 'text;label' means another separator (Excel in many locales writes ';')."""
    for other in (";", "\t", "|", ","):
        if other != sep and other in header:
            return other
    return sep


def _read_jsonl(path: Path) -> pd.DataFrame:
    _check_text(path)
    records = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TunesmithError(
                    f"{path}:{number}: malformed JSON line ({err.msg} at column {err.colno}). "
                    'Each line must be one JSON object, e.g. {"text": "...", "label": "..."}.'
                ) from None
            if not isinstance(record, dict):
                raise TunesmithError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}.")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _read_json(path: Path) -> pd.DataFrame:
    _check_text(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise TunesmithError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg}). If it holds one object per line, name it .jsonl."
        ) from None
    if isinstance(payload, dict) and all(isinstance(v, list) for v in payload.values()):
        payload = [dict(zip(payload, row)) for row in zip(*payload.values())]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise TunesmithError(
            f'{path}: expected a JSON list of objects ([{{"text": ..., "label": ...}}, ...]) or an object of columns.'
        )
    return pd.DataFrame.from_records(payload)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise TunesmithError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err}).") from None


def _check_text(path: Path) -> None:
    """NUL bytes anywhere (not only in the first block) mean a binary file or a broken export."""
    offset = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            at = chunk.find(b"\x00")
            if at >= 0:
                where = "" if offset + at < 4096 else f" (a NUL byte at offset {offset + at:,})"
                raise TunesmithError(
                    f"{path}: looks like a binary file, not text{where}. Export it as UTF-8 CSV/JSONL, or use .parquet."
                )
            offset += len(chunk)


_READERS = {
    "csv": lambda p: _read_delimited(p, ","),
    "tsv": lambda p: _read_delimited(p, "\t"),
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
}
