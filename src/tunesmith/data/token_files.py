"""Token-classification files read in chunks into an Arrow table of words and IOB2 tags on disk that a run
memory-maps (`file_table`), cached by the file's bytes and the columns and filter read; and the train /
validation / test splits a run takes from them, as views of that table.

Why: read whole, a file of tagged sentences was held as a pandas frame of lists, then as Python lists of words
and tags, then again as converted tags: about 2 kB of resident memory per 14-word sentence for as long as a run
lasted. Here a chunk of rows is parsed, checked, converted to IOB2 and written at a time; a run holds the pages it
reads. The tag scheme is read per chunk (`tokens.tagged_rows`): a file tagged IO in one chunk and with B-/I- prefixes
in another is refused, as a whole-file read refuses it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import TunesmithError, did_you_mean
from ..paths import cache_dir
from .bad_rows import leaving_out_now, read_usable
from .columns import TextColumn, content_key, filtered, missing_filter_column, no_filter_match, take
from .file_table import cached_rows
from .readers import checked_path, iter_table
from .tokens import TaggedSplit, TokenData, not_iob2, tagged_rows

VERSION = "1"  # what a table holds; a change makes new keys
CHUNK = 20_000  # rows parsed, checked and converted at once
COUNTS = ("iob1_rows", "bioes_rows", "io_rows")  # rows read as IOB2, per scheme: saved beside the table


def read_tagged(path: str, data, role: str) -> TaggedSplit:
    """The file's words and IOB2 tags (rows kept by data.filter) as columns of its table, read memory-mapped."""
    import pyarrow as pa

    source, fmt = checked_path(path, role)
    columns = [data.tokens_column, data.tags_column, data.text_column, data.entities_column]
    settings = {"version": VERSION, "format": fmt, "columns": columns, "filter": data.filter}
    name = content_key(source, {**settings, "leave_out": leaving_out_now()})
    table_path = cache_dir() / "tagged" / f"{name}.arrow"
    reading = _Reading(path, data)
    words = pa.list_(pa.string())
    schema = pa.schema([("words", words), ("tags", words)])
    table, meta = cached_rows(table_path, schema, lambda: reading.chunks(source, role), reading.summary, _sound)
    return TaggedSplit(
        TextColumn(table.column("words"), None, table_path, "words"),
        TextColumn(table.column("tags"), None, table_path, "tags"),
        source=path,
        **{key: meta[key] for key in COUNTS},
    )


def _sound(meta: dict) -> bool:
    return all(type(meta.get(key)) is int and meta[key] >= 0 for key in COUNTS)


class _Reading:
    """What the chunks of one file have shown: rows kept by the filter, the tag scheme and the rows converted."""

    def __init__(self, path: str, data):
        self.path, self.data = path, data
        self.kept, self.found = 0, {}  # rows after the filter; every column seen
        self.io_types: set[str] = set()  # entity types of chunks tagged IO
        self.prefixed = False  # a chunk tagged with B-/I- (or BIOES) prefixes
        self.counts = dict.fromkeys(COUNTS, 0)

    def chunks(self, source, role: str):
        import pyarrow as pa

        words = pa.list_(pa.string())
        for frame in iter_table(source, role, CHUNK):
            self.found.update(dict.fromkeys(map(str, frame.columns)))
            frame = self._filtered(frame)
            if frame.empty:
                continue
            split = read_usable(frame, lambda rows: tagged_rows(rows, self.data, self.path), self.path)
            self._scheme(split)
            yield [pa.array(list(split.tokens), words), pa.array(list(split.tags), words)]
        for col in self.data.filter or {}:
            if col not in self.found:
                raise missing_filter_column(self.path, col, list(self.found))
        if self.data.filter and not self.kept:
            raise no_filter_match(self.path, self.data.filter)

    def _filtered(self, frame):
        """The chunk's rows kept by data.filter, indexed by their data row after the filter (as errors count)."""
        import pandas as pd

        frame = filtered(frame, self.data.filter)
        frame = frame.set_axis(pd.RangeIndex(self.kept, self.kept + len(frame)))
        self.kept += len(frame)
        return frame

    def _scheme(self, split: TaggedSplit) -> None:
        """Counts the rows read as IOB2; refuses a file whose chunks disagree on IO (no prefixes) vs prefixed tags."""
        if split.io_rows:
            self.io_types |= {tag[2:] for row in split.tags for tag in row if tag != "O"}
        elif any(tag != "O" for row in split.tags for tag in row):
            self.prefixed = True
        if self.prefixed and self.io_types:
            raise not_iob2(self.path, sorted(self.io_types))
        for key in self.counts:
            self.counts[key] += getattr(split, key)

    def summary(self) -> dict:
        return dict(self.counts)


def tag_counts(tags: Sequence) -> dict[str, int]:
    """How many times each tag appears in the rows; a table's column is counted by Arrow, a block at a time."""
    if not isinstance(tags, TextColumn):
        return dict(Counter(t for row in tags for t in row))
    import pyarrow.compute as pc

    out: Counter = Counter()
    for block in tags.blocks(100_000):
        for item in pc.value_counts(pc.list_flatten(block)).to_pylist():
            out[item["values"]] += item["counts"]
    return dict(out)


class Windows(Sequence):
    """Slices of a sequence's rows, (row, start, end) each: the windows of words of the sentences max_length cuts,
    read from the rows when asked for, never copied."""

    def __init__(self, rows: Sequence, spans: np.ndarray):
        self.rows, self.spans = rows, np.asarray(spans, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row, start, end = self.spans[index].tolist()
        return list(self.rows[row][start:end])


class Joined(Sequence):
    """Two sequences read as one (a table's rows that fit, then the windows of the ones that did not)."""

    def __init__(self, first: Sequence, second: Sequence):
        self.parts = (first, second)

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = index + len(self) if index < 0 else index
        first = len(self.parts[0])
        return self.parts[0][index] if index < first else self.parts[1][index - first]

    def __iter__(self):
        yield from self.parts[0]
        yield from self.parts[1]

    @property
    def lengths(self) -> np.ndarray:
        """The parts' row lengths, where both know theirs (token rows): batching reads them, not the rows."""
        parts = [getattr(part, "lengths", None) for part in self.parts]
        if any(p is None for p in parts):
            raise AttributeError("lengths")  # getattr(joined, "lengths", None) is then None
        return np.concatenate(parts)


def load_tokens(data, seed: int) -> TokenData:
    train = read_tagged(data.train, data, "data.train")
    warnings = list(train.warnings)  # the split below makes new TaggedSplits
    if data.validation:
        validation = read_tagged(data.validation, data, "data.validation")
    else:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        cut = max(1, round(data.validation_split * len(order)))
        pick = lambda idx, source: TaggedSplit(take(train.tokens, idx), take(train.tags, idx), source)  # noqa: E731
        train, validation = (
            pick(sorted(order[cut:]), train.source),
            pick(sorted(order[:cut]), f"{train.source} (validation split)"),
        )
    if data.max_train_samples and data.max_train_samples < len(train):
        idx = sorted(random.Random(seed).sample(range(len(train)), data.max_train_samples))
        train = TaggedSplit(take(train.tokens, idx), take(train.tags, idx), train.source)
    labels = ["O"] + sorted(set(tag_counts(train.tags)) - {"O"})
    if len(labels) < 2:
        raise TunesmithError(f"{data.train}: no entity tags in the training data (every tag is O); nothing to learn.")
    test = read_tagged(data.test, data, "data.test") if data.test else None
    for split in (validation, test):
        unseen = sorted(set(tag_counts(split.tags if split else [])) - set(labels))
        if unseen:
            raise TunesmithError(
                f"{split.source}: tag(s) {unseen[:10]} never appear in the training data, so the model "
                f"cannot learn them.{did_you_mean(unseen[0], labels)}"
            )
    evaluation, eval_name = (test, "test") if test is not None else (validation, "validation")
    warnings += [w for split in (validation, test) if split for w in split.warnings]
    return TokenData(train, validation, evaluation, labels, eval_name, warnings)
