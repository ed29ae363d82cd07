"""Generation data read in chunks into an Arrow table of conversations on disk that a run memory-maps, cached by
the file's bytes and the settings that shape the conversations (`file_table`).

Why: read whole, a chat file was held three times at once (the pandas frame, a dict per message, a JSON copy
per sample for the token table): 200,000 prompt/response pairs in a 160 MB JSONL file peaked at 3.4 GB in a
run. Here a chunk of rows is parsed, checked, turned into conversations and written at a time; each row of the
table is one conversation as canonical JSON, decoded when it is read (`Samples`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..paths import cache_dir
from .bad_rows import leaving_out_now
from .columns import TextColumn, content_key
from .file_table import cached_rows
from .readers import checked_path, iter_table

VERSION = "1"  # what a table holds; a change makes new keys
CHUNK = 20_000  # rows parsed, checked and converted at once


def canonical(sample: list[dict]) -> str:
    """A conversation as the one JSON text that names it (the table's rows, the token table's key)."""
    return json.dumps(sample, ensure_ascii=False, sort_keys=True)


def canonical_texts(samples: Sequence) -> Iterator[str]:
    """Each sample's canonical JSON: a table's own rows as they are stored, a list's made."""
    return iter(samples.column) if isinstance(samples, Samples) else map(canonical, samples)


class Samples(Sequence):
    """A read-only sequence of conversations over a column of their canonical JSON: what `Conversations.samples`
    holds for a file. Rows are decoded as they are read; a sample or split of the file is a view by positions.
    Lists compare equal to it."""

    def __init__(self, column: TextColumn):
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [json.loads(text) for text in self.column[index]]
        return json.loads(self.column[index])

    def __iter__(self):
        for text in self.column:
            yield json.loads(text)

    def take(self, positions) -> Samples:
        return Samples(self.column.take(positions))

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, Samples)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # compared by its conversations, like the list it stands for

    def __add__(self, other) -> list:
        return list(self) + list(other)

    def __radd__(self, other) -> list:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"Samples({len(self)} conversations of {self.column!r})"


@dataclass
class Table:
    samples: Samples
    format: str  # the layout the rows were read as
    columns: list[str]  # every column of the file, in order


def conversation_table(
    path: str, role: str, settings: dict, detect: Callable[[list[str]], str], convert: Callable
) -> Table:
    """The conversations of a data file: `detect(columns)` picks the layout from the first chunk, and
    `convert(frame, columns, layout)` turns each chunk into conversations (raising on rows it cannot use).
    `settings`: everything else that shapes them (column names, system prompt), part of the table's name."""
    import pyarrow as pa

    source, fmt = checked_path(path, role)
    leave = leaving_out_now()  # rows left out under data_check: warn make another table than a strict read
    name = content_key(source, {"version": VERSION, "format": fmt, **settings, "leave_out": leave})
    table_path = cache_dir() / "chats" / f"{name}.arrow"
    found: dict = {"layout": None, "seen": {}}

    def chunks():
        for frame in iter_table(source, role, CHUNK):
            found["seen"].update(dict.fromkeys(map(str, frame.columns)))
            found["layout"] = found["layout"] or detect(list(found["seen"]))
            samples = [canonical(s) for s in convert(frame, list(map(str, frame.columns)), found["layout"])]
            yield [pa.array(samples, pa.large_string())]

    schema = pa.schema([("sample", pa.large_string())])
    summary = lambda: {"format": found["layout"], "columns": list(found["seen"])}  # noqa: E731
    table, meta = cached_rows(table_path, schema, chunks, summary, _sound)
    column = TextColumn(table.column("sample"), None, table_path, "sample")
    return Table(Samples(column), meta["format"], meta["columns"])


def _sound(meta: dict) -> bool:
    columns = meta.get("columns")
    return (
        isinstance(meta.get("format"), str) and isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    )
