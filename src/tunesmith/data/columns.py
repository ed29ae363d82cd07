"""The text, text-pair and label columns of a data file, read in chunks into an Arrow table on disk that a run
memory-maps, cached by the file's bytes.

Why: read whole into pandas and then into Python lists, a 1,000,000-row file of short texts costs about
0.35 kB of resident memory per row for as long as the run lasts. Here a chunk of rows is parsed, checked and
written at a time; the texts stay in the file and a run holds the pages it reads (`TextColumn`). Labels stay a
Python list, but of shared strings: 8 bytes a row.

Multi-label rows keep their label set as one JSON list a cell ("labels"), parsed from the file's lists, list
text or separated strings as the recipe says; a run holds one Python list per distinct set, not one per row.

The table is keyed by the file's content, its format, the columns, the filter and the label separator read, so a
second run on the same file opens it without parsing. A file that fails a check writes nothing: errors are found
again, with the same words, each time such a file is read.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TunesmithError, did_you_mean, task_hint
from ..paths import cache_dir
from .bad_rows import leave_out
from .readers import checked_path, iter_table, kept_parse

VERSION = "1"  # what a table holds; a change makes new keys
CHUNK = 50_000  # rows parsed and checked at once
BLOCK = 16_384  # strings turned into Python objects at once when a column is iterated
TEXT_KEYS = ("text", "pair")
SHOWN = 10  # rows named in an error


class TextColumn(Sequence):
    """A read-only sequence of strings over an Arrow column of a memory-mapped table, through row positions when
    it is a sample or split of the file: what `Split.texts` holds. Lists compare equal to it."""

    def __init__(self, array, rows: np.ndarray | None = None, path: Path | None = None, name: str = "text"):
        self.array, self.rows, self.path, self.name = array, rows, path, name

    def __len__(self) -> int:
        return len(self.array) if self.rows is None else len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._block(np.arange(len(self))[index]).to_pylist()
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("TextColumn index out of range")
        return self.array[index if self.rows is None else int(self.rows[index])].as_py()

    def __iter__(self):
        for block in self.blocks():
            yield from block.to_pylist()

    def blocks(self, size: int = BLOCK):
        """The column as Arrow arrays of `size` rows each (views where the rows are a run), for Arrow's compute."""
        for start in range(0, len(self), size):
            yield self._block(np.arange(start, min(start + size, len(self))))

    def _block(self, positions: np.ndarray):
        rows = positions if self.rows is None else self.rows[positions]
        if len(rows) and np.all(np.diff(rows) == 1):
            return self.array.slice(int(rows[0]), len(rows))  # a run of rows: a view, no copy
        import pyarrow as pa
        import pyarrow.compute as pc

        # the system allocator gives a copied block back when it is dropped; Arrow's own pool would keep it
        return pc.take(self.array, rows, memory_pool=pa.system_memory_pool())

    def fingerprint(self) -> bytes:
        """What names these strings: the table (named by the file's bytes, columns and filter), the column and
        the rows; a cache keyed by it need not read a million strings to tell them apart."""
        rows = b"all" if self.rows is None else self.rows.tobytes()
        return f"{self.path.name}:{self.name}:".encode() + rows

    def take(self, positions) -> TextColumn:
        """The strings at these positions, as a column over the same table."""
        positions = np.asarray(positions, dtype=np.int64)
        return TextColumn(self.array, positions if self.rows is None else self.rows[positions], self.path, self.name)

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, TextColumn)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # a column is compared by its strings, like the list it stands for

    def __add__(self, other) -> list[str]:
        return list(self) + list(other)

    def __radd__(self, other) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"TextColumn({len(self)} rows of {self.path.name if self.path else 'a table'}:{self.name})"


def take(items, positions):
    """The items at these positions: a view over the same table where `items` is one (a column, conversations),
    a list of a list's; None stays None."""
    if items is None:
        return None
    if isinstance(items, Sequence) and hasattr(items, "take"):
        return items.take(np.asarray(positions, dtype=np.int64))
    return [items[i] for i in positions]


def dataset_of(columns: dict[str, Sequence]):
    """A `datasets.Dataset` over the table these columns are views of (key -> the column, renamed), read
    memory-mapped and through their row positions; None unless every column is one of the same table and rows."""
    views = list(columns.values())
    first = views[0]
    if not all(isinstance(c, TextColumn) and c.path == first.path for c in views) or first.path is None:
        return None
    if any(
        (c.rows is None) != (first.rows is None) or (c.rows is not None and not np.array_equal(c.rows, first.rows))
        for c in views
    ):
        return None
    import datasets

    table = datasets.Dataset.from_file(str(first.path)).select_columns([c.name for c in views])
    table = table.rename_columns({c.name: key for key, c in columns.items() if c.name != key})
    return table if first.rows is None else table.select(first.rows)


@dataclass
class Read:
    """What `read_columns` found: the usable rows' columns and labels, and the scan of the whole file."""

    columns: dict[str, TextColumn]  # "text" (and "pair") of the usable rows
    labels: list[str] | None
    scan: _Scan
    label_sets: list[list[str]] | None = None  # multi-label: each row's sorted labels (shared lists: read only)


def read_columns(
    path: str,
    role: str,
    wanted: dict[str, str | None],
    where: dict | None = None,
    options: dict[str, str] | None = None,
    strict: bool = True,
    separator: str | None = None,
) -> Read:
    """The file's columns named in `wanted` ("text", "pair", "label" or, for multi-label rows, "labels" -> column
    or None), rows kept by `where` (data.filter); `separator` splits a "labels" string cell. Strict (training): a
    bad cell or missing column is an error naming file, column and data rows.
    Not strict (the data check): the rows without a problem, and the scan that counts the others. One table
    serves both, so the check's read is the method's too."""
    source, fmt = checked_path(path, role)
    wanted = {k: v for k, v in wanted.items() if v is not None}
    separator = separator if "labels" in wanted else None
    table_path = cache_dir() / "tables" / f"{_key(source, fmt, wanted, where, separator)}.arrow"
    opened = _open(table_path, _Scan(path, wanted, where, separator))
    if opened is None:
        _write(table_path, source, role, _Scan(path, wanted, where, separator))
        opened = _open(table_path, _Scan(path, wanted, where, separator))
    else:
        kept_parse(source, role)  # a parse the data check left for the method is not needed: dropped, not held
    table, scan = opened
    if strict:
        scan.raise_problems(options)
        if not table.num_rows:  # data_check: warn left every row out
            raise TunesmithError(f"{path}: no usable row: every row has an empty or unreadable cell (see above).")
    else:
        scan.raise_filter_problems()
    columns = {k: TextColumn(table.column(k), None, table_path, k) for k in TEXT_KEYS if k in wanted}
    labels = _labels(table.column("label")) if "label" in wanted else None
    sets = _labels(table.column("labels"), _label_set) if "labels" in wanted else None
    return Read(columns, labels, scan, sets)


def _labels(column, decode=None) -> list:
    """The column's values as a list holding one object per distinct value (not one per row): a million rows of a
    few labels, or of a few hundred label sets (`decode`: json.loads), hold that many objects."""
    import pyarrow.compute as pc

    names = pc.unique(column)
    codes = pc.index_in(column, value_set=names).to_numpy(zero_copy_only=False)
    names = [decode(name) for name in names.to_pylist()] if decode else names.to_pylist()
    return [names[c] for c in codes]


def _label_set(cell: str) -> list[str]:
    """A table's label-set cell: a JSON list of strings, else ValueError (a damaged table is rebuilt)."""
    value = json.loads(cell)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a label set")
    return value


def _key(source: Path, fmt: str, wanted: dict, where: dict | None, separator: str | None) -> str:
    settings = {"version": VERSION, "format": fmt, "columns": wanted, "filter": where}
    if separator is not None:  # only multi-label reads split on it: other tables keep their names
        settings["separator"] = separator
    return content_key(source, settings)


def content_key(source: Path, settings: dict) -> str:
    """A cache table's name: the data file's bytes and the settings that shape what is read from them."""
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def _open(path: Path, scan: _Scan):
    """(the table memory-mapped, `scan` filled from the file beside it), or None when there is none (or a damaged
    one, which is dropped and rebuilt)."""
    import pyarrow as pa

    if not path.is_file():
        return None
    try:
        import pyarrow.compute as pc

        scan.restore(json.loads(_scan_file(path).read_text(encoding="utf-8")))
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        if "labels" in table.column_names:  # each distinct set checked once, before a run relies on it
            for cell in pc.unique(table.column("labels")).to_pylist():
                _label_set(cell)
        return table, scan
    except Exception:  # noqa: BLE001  (a damaged cache file, whatever Arrow says of it, is rebuilt, not trusted)
        path.unlink(missing_ok=True)
        return None


def _write(path: Path, source: Path, role: str, scan: _Scan) -> None:
    """Parse, check and write chunk by chunk to a temporary file, moved into place when the whole file is read
    (a killed run leaves no table). The table holds the usable rows; the file beside it, the scan of all rows."""
    import pyarrow as pa

    wanted = scan.wanted
    schema = pa.schema([(k, pa.large_string() if k in TEXT_KEYS else pa.string()) for k in wanted])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for frame in _frames(source, role):
                arrays = scan.chunk(frame)
                if arrays is not None:
                    writer.write_batch(pa.record_batch([arrays[k] for k in wanted], schema=schema))
        _scan_file(path).write_text(json.dumps(scan.summary()), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _scan_file(table: Path) -> Path:
    return table.with_suffix(".scan.json")


def _frames(source: Path, role: str):
    """The data check's parse of this file when it left one for the method (parsed once), else the file in chunks."""
    frame = kept_parse(source, role)
    return [frame] if frame is not None else iter_table(source, role, CHUNK)


class _Scan:
    """What the chunks of one file have shown: its columns, its rows before and after the filter, and the bad
    cells found (how many, and the first rows), per kind: "text", "pair", "listed" and "label"."""

    def __init__(self, name: str, wanted: dict, where: dict | None, separator: str | None = None):
        self.name, self.wanted, self.where = name, wanted, where  # name: the path as the recipe gives it
        self.separator = separator  # splits a multi-label string cell
        self.seen: dict[str, None] = {}  # every column of the file, in order (JSON lines may differ in keys)
        self.rows = self.kept = 0
        self.bad: dict[str, list] = {k: [0, []] for k in (*TEXT_KEYS, "listed", "label")}

    def summary(self) -> dict:
        return {"seen": list(self.seen), "rows": self.rows, "kept": self.kept, "bad": self.bad}

    def restore(self, summary: dict) -> None:
        """The scan as `summary()` saved it; a summary of another shape is an error (the table is rebuilt)."""
        seen, rows, kept, bad = summary["seen"], summary["rows"], summary["kept"], summary["bad"]
        if not (
            isinstance(seen, list) and isinstance(rows, int) and isinstance(kept, int) and set(bad) == set(self.bad)
        ):
            raise ValueError("not a scan summary")
        self.seen, self.rows, self.kept = dict.fromkeys(map(str, seen)), rows, kept
        self.bad = {k: [int(bad[k][0]), [int(r) for r in bad[k][1]]] for k in self.bad}

    def chunk(self, frame: pd.DataFrame) -> dict | None:
        """The usable rows of one chunk, column by column; the others counted."""
        self.seen.update(dict.fromkeys(map(str, frame.columns)))
        self.rows += len(frame)
        frame = filtered(frame, self.where)
        if frame.empty:
            return None
        rows = np.arange(self.kept + 1, self.kept + len(frame) + 1)  # 1-based, after the filter (as errors count)
        self.kept += len(frame)
        cells = {k: frame[c].tolist() if c in frame.columns else [None] * len(frame) for k, c in self.wanted.items()}
        out = {k: self._texts(k, cells[k], rows) for k in TEXT_KEYS if k in cells}
        if "label" in cells:
            out["label"] = self._labels(cells["label"], rows)
        if "labels" in cells:  # every cell is a set: an empty one is a row without a label
            out["labels"] = [json.dumps(s) for s in label_sets(cells["labels"], self.separator)]
        usable = [i for i in range(len(frame)) if all(column[i] is not None for column in out.values())]
        return {k: [column[i] for i in usable] for k, column in out.items()} if usable else None

    def _texts(self, key: str, values: list, rows: np.ndarray) -> list:
        bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
        self._note(key, bad, rows)
        return [v if isinstance(v, str) and v.strip() else None for v in values]

    def _labels(self, values: list, rows: np.ndarray) -> list:
        listed = {i for i, v in enumerate(values) if isinstance(v, (list, tuple, dict, set, np.ndarray))}
        self._note("listed", sorted(listed), rows)
        empty = [i for i, v in enumerate(values) if i not in listed and _empty_label(v)]
        self._note("label", empty, rows)
        return [None if i in listed or _empty_label(v) else label_text(v) for i, v in enumerate(values)]

    def _note(self, kind: str, bad: list[int], rows: np.ndarray) -> None:
        count, shown = self.bad[kind]
        self.bad[kind] = [count + len(bad), shown + [int(rows[i]) for i in bad[: SHOWN - len(shown)]]]

    def raise_filter_problems(self) -> None:
        found, path = list(self.seen), self.name
        for col in self.where or {}:
            if col not in self.seen:
                raise missing_filter_column(path, col, found)
        if self.where and not self.kept:
            raise no_filter_match(path, self.where)

    def raise_problems(self, options: dict | None) -> None:
        """The first problem, in the order a whole-file read finds them: filter, columns, texts, labels. Bad cells
        are rows the table left out already: inside `leaving_out()` they are logged, not raised."""
        self.raise_filter_problems()
        found, path = list(self.seen), self.name
        settings = (("text", "text_column"), ("pair", "text_pair_column"), ("label", "label_column"))
        for key, setting in (*settings, ("labels", "label_column")):
            col = self.wanted.get(key)
            if col is not None and col not in self.seen:
                raise TunesmithError(
                    f"{path}: no column '{col}' (data.{setting}). Columns found: {', '.join(found)}."
                    f"{did_you_mean(col, found)}{task_hint(found)} "
                    + (
                        f"Pass {options[setting]} NAME."
                        if options and setting in options
                        else f"Set data.{setting} to the right column name (e.g. --set data.{setting}=NAME)."
                    )
                )
        for problem in self._cell_problems():
            if not leave_out(problem):
                raise problem

    def _cell_problems(self) -> list[TunesmithError]:
        path, out = self.name, []
        for key in TEXT_KEYS:
            count, shown = self.bad[key]
            if count:
                out.append(bad_texts(path, self.wanted[key], count, shown))
        count, shown = self.bad["listed"]
        if count:
            out.append(
                TunesmithError(
                    f"{path}: column '{self.wanted['label']}' holds lists (or objects), not one label per row, at "
                    f"data row(s) {_rows(shown, count)}. Several labels per text is multi-label classification: set "
                    "data.multi_label: true (or data.label_separator for strings like 'a|b'), or give each row one "
                    "label."
                )
            )
        count, shown = self.bad["label"]
        if count:
            out.append(
                TunesmithError(
                    f"{path}: {count} empty label cell(s) in column '{self.wanted['label']}' at data row(s) "
                    f"{_rows(shown, count)}. Every row needs a label."
                )
            )
        return out


def bad_texts(path: str, col: str, count: int, shown: list[int]) -> TunesmithError:
    return TunesmithError(
        f"{path}: {count} empty or non-text cell(s) in column '{col}' at data row(s) {_rows(shown, count)} "
        "(1-based, header not counted). Remove those rows or fill in the text."
    )


def filtered(frame: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    """A chunk's rows kept by data.filter; a chunk without a filtered column keeps none (the file's check, after
    every chunk, says whether the column was anywhere)."""
    for col, wanted in (where or {}).items():
        frame = frame[frame[col].astype(str).isin(filter_values(wanted))] if col in frame.columns else frame.iloc[:0]
    return frame


def filter_values(wanted) -> set[str]:
    """data.filter's value (or list of values) for one column, as the strings cells are compared with."""
    return {str(v) for v in (wanted if isinstance(wanted, list) else [wanted])}


def missing_filter_column(path: str, col: str, found: list[str]) -> TunesmithError:
    return TunesmithError(
        f"{path}: data.filter names column '{col}', which the file lacks. Columns found: "
        f"{', '.join(found)}.{did_you_mean(col, found)}"
    )


def no_filter_match(path: str, where: dict) -> TunesmithError:
    return TunesmithError(f"{path}: no rows match data.filter {where}. Check the values against the file's column.")


_WHOLE_NUMBER = re.compile(r"^[+-]?\d+\.0*$")


def label_text(value) -> str:
    """Labels keep the user's spelling; numbers become their plain string form: 1, 1.0 (a JSON or Parquet
    float) and "1.0" (a CSV cell written by a float column) are all the label "1"."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    return text.rstrip("0").rstrip(".").lstrip("+") if _WHOLE_NUMBER.match(text) else text


def label_sets(values: list, separator: str | None) -> list[list[str]]:
    """One sorted label set per cell: a list cell as it is, a string split on `separator`, an empty cell = no
    label."""
    out = []
    for value in values:
        if isinstance(value, (list, tuple, set, np.ndarray)):
            items = [label_text(v) for v in value]
        elif value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
            items = []
        elif isinstance(value, str) and (listed := list_cell(value)) is not None:
            items = [label_text(v) for v in listed]
        elif separator and isinstance(value, str):
            items = [part.strip() for part in value.split(separator)]
        else:
            items = [label_text(value)]
        out.append(sorted({item for item in items if item}))
    return out


LIST_CELL_MAX = 10_000  # characters: labels, or a sentence's words, are shorter; a longer cell is not parsed


def list_cell(text: str) -> list | None:
    """The items of a CSV cell that holds a list of labels, or of a sentence's words or tags; None otherwise."""
    value = list_literal(text, LIST_CELL_MAX)
    return value if value is not None and all(isinstance(v, (str, int, float)) for v in value) else None


def list_literal(text: str, limit: int) -> list | None:
    """A list written into a text cell: as JSON ('["a", "b"]'), or as pandas' to_csv writes a Python list
    ("['a', 'b']", read with ast.literal_eval: literals only, never code). None when the text is no list, or is
    longer than `limit` characters."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")) or len(text) > limit:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested past Python's stack: no list of data
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, list) else None


def _empty_label(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _rows(shown: list[int], count: int) -> str:
    return ", ".join(map(str, shown)) + (" ..." if count > SHOWN else "")
