"""Read CSV, TSV, JSONL, JSON and Parquet into a DataFrame, with errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import TunesmithError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path, role: str = "data") -> pd.DataFrame:
    """All rows of a tabular file. `role` ("data.train", ...) is named in errors."""
    path = Path(path)
    if not path.exists():
        raise TunesmithError(f"{role}: file not found: {path}. Check the path (relative paths resolve against the recipe's folder).")
    if path.is_dir():
        raise TunesmithError(f"{role}: {path} is a folder; point it at a file ({', '.join(sorted(set(SUFFIXES)))}).")
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TunesmithError(f"{role}: {path} has an unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}.")
    if path.stat().st_size == 0:
        raise TunesmithError(f"{role}: {path} is empty (0 bytes). Fill it with a header and at least one row.")
    try:
        frame = _READERS[fmt](path)
    except UnicodeDecodeError as err:
        raise TunesmithError(f"{role}: {path} is not UTF-8 text (bad byte at offset {err.start}). Re-save it as UTF-8.") from None
    if frame.empty:
        raise TunesmithError(f"{role}: {path} has no data rows (columns found: {', '.join(map(str, frame.columns)) or 'none'}).")
    frame.columns = [str(c).strip() for c in frame.columns]
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise TunesmithError(f"{role}: {path}: column name(s) {', '.join(map(repr, repeated))} appear more than once "
                             "(spaces around names are ignored). Rename the columns so each is unique.")
    _check_cell_sizes(frame, path, role)
    return frame


MAX_CELL_CHARS = 1_000_000  # ~250k tokens: far past any model's context; usually a broken export (one cell = whole file)


def _check_cell_sizes(frame: pd.DataFrame, path: Path, role: str) -> None:
    for col in frame.columns:
        sizes = frame[col].map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(sizes) and sizes.max() > MAX_CELL_CHARS:
            row = int(sizes.idxmax()) + 1
            raise TunesmithError(
                f"{role}: {path}: column '{col}', data row {row} holds {sizes.max():,} characters (limit {MAX_CELL_CHARS:,}). "
                "That is usually a broken export (an unclosed quote swallowing the rest of the file); otherwise split "
                "long documents into passages.")


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    _check_text(path)
    try:
        # Everything as strings: a text of "123" stays text, "NA" stays "NA".
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as err:
        raise TunesmithError(f"{path}: malformed {'CSV' if sep == ',' else 'TSV'}: {err}. "
                             "Check quoting and the number of fields on that line.") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    _check_text(path)
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TunesmithError(f"{path}:{number}: malformed JSON line ({err.msg} at column {err.colno}). "
                                     "Each line must be one JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}.") from None
            if not isinstance(record, dict):
                raise TunesmithError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}.")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _read_json(path: Path) -> pd.DataFrame:
    _check_text(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TunesmithError(f"{path}:{err.lineno}: malformed JSON ({err.msg}). If it holds one object per line, name it .jsonl.") from None
    if isinstance(payload, dict) and all(isinstance(v, list) for v in payload.values()):
        payload = [dict(zip(payload, row)) for row in zip(*payload.values())]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise TunesmithError(f"{path}: expected a JSON list of objects ([{{\"text\": ..., \"label\": ...}}, ...]) or an object of columns.")
    return pd.DataFrame.from_records(payload)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise TunesmithError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err}).") from None


def _check_text(path: Path) -> None:
    head = path.open("rb").read(4096)
    if b"\x00" in head:
        raise TunesmithError(f"{path}: looks like a binary file, not text. Export it as UTF-8 CSV/JSONL, or use .parquet.")


_READERS = {
    "csv": lambda p: _read_delimited(p, ","),
    "tsv": lambda p: _read_delimited(p, "\t"),
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
}
