"""Read CSV, TSV, JSONL, JSON, Parquet and Excel into a DataFrame, with errors that name file and line."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import TunesmithError

log = logging.getLogger(__name__)

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".conll": "conll",
    ".iob": "conll",
    ".bio": "conll",
}
MAX_SENTENCE_WORDS = 10_000  # a CoNLL "sentence" this long is a file without blank lines between sentences
# an .xlsx is a zip of XML: refused before parsing when it would unpack past this, or packs unlike a spreadsheet
XLSX_MAX_UNPACKED = 2 << 30
XLSX_MAX_RATIO = 200


def read_table(path: str | Path, role: str = "data") -> pd.DataFrame:
    """All rows of a tabular file. `role` ("data.train", ...) is named in errors."""
    path, fmt = checked_path(path, role)
    frame = next(_frames(path, fmt, role, _parse))
    if frame.empty:
        raise _no_rows(path, role, frame.columns)
    return _checked_frame(frame, path, role)


def iter_table(path: str | Path, role: str = "data", rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """The file's rows as frames of at most `rows` rows, each checked as `read_table` checks a whole file, so
    a file of any size is read in bounded memory. Each frame's index counts data rows from 0 across the file."""
    path, fmt = checked_path(path, role)
    offset, columns = 0, []
    for frame in _frames(path, fmt, role, lambda p, f: _CHUNKS[f](p, rows)):
        columns = list(frame.columns)
        if frame.empty:
            continue
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        offset += len(frame)
        yield _checked_frame(frame, path, role)
    if not offset:
        raise _no_rows(path, role, columns)


def checked_path(path: str | Path, role: str) -> tuple[Path, str]:
    """(the path, its format) when it names a non-empty regular file of a supported type; else the error."""
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
        old_excel = (
            " Save it from Excel as .xlsx or CSV UTF-8." if path.suffix.lower() in (".xls", ".xlsm", ".xlsb") else ""
        )
        raise TunesmithError(
            f"{role}: {path} has an unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}."
            + old_excel
        )
    if path.stat().st_size == 0:
        raise TunesmithError(f"{role}: {path} is empty (0 bytes). Fill it with a header and at least one row.")
    return path, fmt


def _no_rows(path: Path, role: str, columns) -> TunesmithError:
    return TunesmithError(f"{role}: {path} has no data rows (columns found: {', '.join(map(str, columns)) or 'none'}).")


def _frames(path: Path, fmt: str, role: str, parse) -> Iterator[pd.DataFrame]:
    """`parse(path, fmt)`'s frames, a file that is not UTF-8 named as such (the decoder may fail in any chunk)."""
    try:
        frames = parse(path, fmt)
        yield from [frames] if isinstance(frames, pd.DataFrame) else frames
    except UnicodeDecodeError as err:
        raise TunesmithError(
            f"{role}: {path} is not UTF-8 text (bad byte at offset {err.start}). Re-save it as UTF-8."
        ) from None


def _checked_frame(frame: pd.DataFrame, path: Path, role: str) -> pd.DataFrame:
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
    key = _identity(path)
    if key in _kept:  # the check reading a file twice gets a copy; the method takes the parse
        return _kept[key].copy() if _keeping else _kept.pop(key)
    frame = _READERS[fmt](path)
    if _keeping:
        _kept[key] = frame.copy()  # read_table changes the frame it returns; the method gets the file as read
    return frame


def _identity(path: Path) -> tuple:
    info = path.stat()
    return (str(path.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def kept_parse(path: Path, role: str) -> pd.DataFrame | None:
    """The data check's parse of this file, checked as `read_table` checks it, when `read_once()` kept one for
    the method: taken, so nothing holds it after (a reader that finds its rows elsewhere takes it all the same)."""
    if _kept is None or _keeping:
        return None
    frame = _kept.pop(_identity(path), None)
    if frame is not None and frame.empty:
        raise _no_rows(path, role, frame.columns)
    return None if frame is None else _checked_frame(frame, path, role)


MAX_CELL_CHARS = (
    1_000_000  # ~250k tokens: far past any model's context; usually a broken export (one cell = whole file)
)


def _check_cell_sizes(frame: pd.DataFrame, path: Path, role: str) -> None:
    for col in frame.columns:
        sizes = frame[col].map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(sizes) and sizes.max() > MAX_CELL_CHARS:
            row = int(sizes.idxmax()) + 1  # the index counts rows across the file
            raise TunesmithError(
                f"{role}: {path}: column '{col}', data row {row} holds {sizes.max():,} characters (limit "
                f"{MAX_CELL_CHARS:,}). "
                "That is usually a broken export (an unclosed quote swallowing the rest of the file); otherwise split "
                "long documents into passages."
            )


def _read_delimited(path: Path, sep: str, rows: int | None) -> Iterator[pd.DataFrame]:
    _check_text(path)
    hint = _separator_hint(path)  # Excel's "sep=;" line: the separator, and the header on the next line
    sep, skip = (hint, 1) if hint else (sep, 0)
    header, first, line = _opening(path, sep, skip)
    if len(header) == 1 and not hint:
        sep = _other_separator(header[0], sep)
        header, first, line = _opening(path, sep)
    stripped = [h.strip() for h in header]
    repeated = sorted({h for h in stripped if stripped.count(h) > 1})
    if repeated:  # pandas would rename the second one to "text.1" without a word
        raise TunesmithError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once in the header "
            "(spaces around names are ignored). Rename the columns so each is unique."
        )
    if first is not None and len(first) > len(header):  # pandas would shift every column without a word
        raise TunesmithError(
            f"{path}: malformed {_format(sep)}: line {line} has {len(first)} fields where the header has "
            f'{len(header)}. A text that holds the separator {sep!r} must be in double quotes ("Hello, world"); '
            "spreadsheet exports do this."
        )
    quoting = _tsv_quoting(path) if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        # Everything as strings: a text of "123" stays text, "NA" stays "NA".
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark that would glue itself to the first column name
        # index_col=False: never take the first column as the index (see _opening)
        frames = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            chunksize=rows,
            index_col=False,
            quoting=quoting,
            skiprows=skip,
        )
        yield from [frames] if rows is None else frames  # the parser may stop at a bad line in any chunk
    except pd.errors.EmptyDataError:
        yield pd.DataFrame()
    except pd.errors.ParserError as err:
        raise TunesmithError(
            f"{path}: malformed {_format(sep)}: {str(err).strip()}. "
            "Check quoting and the number of fields on that line."
        ) from None


def _opening(path: Path, sep: str, skip: int = 0) -> tuple[list[str], list[str] | None, int]:
    """(the header, the first data row, the line that row ends on) as the csv module reads them, after `skip`
    lines. A first row with more fields than the header is what pandas reads as an index column, shifting every
    column by one; a later row with extra fields is a parser error naming its line. What the csv module cannot
    read is left to pandas, which names the problem with its line."""
    header, first = [], None
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for _ in range(skip):
            handle.readline()
        reader = csv.reader(handle, delimiter=sep)
        records = (record for record in reader if record)  # pandas skips blank lines too
        try:
            header = next(records, [])
            first = next(records, None)
        except csv.Error:
            pass
        return header, first, reader.line_num + skip


def _format(sep: str) -> str:
    return {",": "CSV", "\t": "TSV"}.get(sep, f"'{sep}'-separated file")


def _separator_hint(path: Path) -> str | None:
    """The separator an Excel "sep=;" first line names (Excel writes and reads it so a file opens in columns in
    any locale); None without one. Read as a header, it made the file one column named "sep=" and a blank."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline(64).rstrip("\r\n")
    return first[4] if len(first) == 5 and first.lower().startswith("sep=") else None


def _tsv_quoting(path: Path) -> int:
    """How a TSV file's double quotes are meant. Spreadsheets quote a cell that holds a tab, a line break or a quote
    and double the quotes inside it (QUOTE_MINIMAL); plain TSV files (GLUE's, most exports from code) have no
    quoting, and there a text that starts with a quote would open a quoted field that swallows the rows after it,
    without an error, or lose its quotes. A file whose quotes do not follow the spreadsheet rule, or whose quoted
    read puts a tab inside a cell, is read with its quotes as part of the texts (QUOTE_NONE)."""
    if not _has_quotes(path) or _spreadsheet_quoted(path):
        return csv.QUOTE_MINIMAL
    log.warning(
        f"{path}: read as plain TSV, its double quotes kept as part of the texts (they do not follow spreadsheet "
        "quoting: read that way, a quote would merge the rows after it or be dropped)."
    )
    return csv.QUOTE_NONE


def _has_quotes(path: Path) -> bool:
    """Whether the file holds a double quote at all (a byte scan: most TSV files have none, and need no parse)."""
    with path.open("rb") as handle:
        return any(b'"' in block for block in iter(lambda: handle.read(1 << 20), b""))


def _spreadsheet_quoted(path: Path) -> bool:
    """Whether every quote follows spreadsheet quoting: a quoted read (strict) that never puts a tab in a cell."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            return not any(
                "\t" in field for record in csv.reader(handle, delimiter="\t", strict=True) for field in record
            )
        except csv.Error:  # a quote not followed by a tab, or a cell past the csv module's field limit
            return False


def _other_separator(header: str, sep: str) -> str:
    """A one-column header such as 'text;label' means another separator (Excel in many locales writes ';')."""
    for other in (";", "\t", "|", ","):
        if other != sep and other in header:
            return other
    return sep


def _read_jsonl(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    _check_text(path)
    records: list[dict] = []
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
            except RecursionError:
                raise TunesmithError(f"{path}:{number}: JSON nested too deeply to be data.") from None
            if not isinstance(record, dict):
                raise TunesmithError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}.")
            records.append(record)
            if rows is not None and len(records) == rows:
                yield pd.DataFrame.from_records(records)
                records = []
    if records or rows is None:
        yield pd.DataFrame.from_records(records)


def _read_json(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    """One JSON document is parsed whole (the format has no rows to stop at); its records are framed in chunks."""
    _check_text(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise TunesmithError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg}). If it holds one object per line, name it .jsonl."
        ) from None
    except RecursionError:
        raise TunesmithError(f"{path}: JSON nested too deeply to be data.") from None
    if isinstance(payload, dict) and all(isinstance(v, list) for v in payload.values()):
        payload = [dict(zip(payload, row)) for row in zip(*payload.values())]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise TunesmithError(
            f'{path}: expected a JSON list of objects ([{{"text": ..., "label": ...}}, ...]) or an object of columns.'
        )
    step = rows or max(len(payload), 1)
    for start in range(0, max(len(payload), 1), step):
        yield pd.DataFrame.from_records(payload[start : start + step])


def _read_parquet(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        if rows is None:
            yield pd.read_parquet(path)
            return
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise TunesmithError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err}).") from None


def _read_xlsx(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    """The first sheet, every cell as text as the CSV reader reads it (a formula as its last computed value; macros
    and external links are never run). openpyxl parses the XML through defusedxml (no entity expansion)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as packed:
            unpacked = sum(info.file_size for info in packed.infolist())
    except (zipfile.BadZipFile, OSError) as err:
        raise TunesmithError(f"{path}: not a readable .xlsx file ({err}).") from None
    if unpacked > XLSX_MAX_UNPACKED or unpacked > XLSX_MAX_RATIO * max(path.stat().st_size, 1):
        raise TunesmithError(
            f"{path}: unpacks to {unpacked:,} bytes from {path.stat().st_size:,}, unlike a spreadsheet; refused "
            "(export the sheet as CSV if it is real)."
        )
    try:
        frame = pd.read_excel(path, sheet_name=0, dtype=str, keep_default_na=False, engine="openpyxl")
    except ImportError:
        raise TunesmithError(f"{path}: reading .xlsx needs openpyxl: pip install openpyxl defusedxml") from None
    except Exception as err:  # openpyxl raises many types for damaged files
        raise TunesmithError(f"{path}: not a readable .xlsx file ({type(err).__name__}: {err}).") from None
    frame.columns = [str(c) for c in frame.columns]
    step = rows or max(len(frame), 1)
    for start in range(0, max(len(frame), 1), step):
        yield frame.iloc[start : start + step].reset_index(drop=True)


def _read_conll(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    """CoNLL-style token files (CoNLL-2003, WNUT, most NER exports): a word per line with its tag in the last
    field (fields split on spaces or tabs; those between, such as part of speech, are ignored), a blank line
    between sentences, `-DOCSTART-` lines skipped. A sentence is a row: {"tokens": [...], "tags": [...]}."""
    _check_text(path)
    records: list[dict] = []
    words: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if fields and fields[0] != "-DOCSTART-":
                if len(fields) < 2:
                    raise TunesmithError(
                        f"{path}:{number}: a CoNLL line holds a word and its tag, separated by a space or a tab; "
                        f"got {line.strip()[:80]!r}."
                    )
                words.append(fields[0])
                tags.append(fields[-1])
                if len(words) > MAX_SENTENCE_WORDS:
                    raise TunesmithError(
                        f"{path}:{number}: over {MAX_SENTENCE_WORDS:,} words without a blank line; CoNLL files "
                        "put a blank line after each sentence."
                    )
                continue
            if words:
                records.append({"tokens": words, "tags": tags})
                words, tags = [], []
            if rows is not None and len(records) == rows:
                yield pd.DataFrame.from_records(records)
                records = []
    if words:
        records.append({"tokens": words, "tags": tags})
    if records or rows is None:
        yield pd.DataFrame.from_records(records, columns=["tokens", "tags"])


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


_CHUNKS = {
    "csv": lambda p, rows: _read_delimited(p, ",", rows),
    "tsv": lambda p, rows: _read_delimited(p, "\t", rows),
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
    "xlsx": _read_xlsx,
    "conll": _read_conll,
}
_READERS = {fmt: lambda p, read=read: next(read(p, None)) for fmt, read in _CHUNKS.items()}  # the whole file
