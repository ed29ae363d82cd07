"""Tokenized rows as a memory-mapped table, cached on disk: what lets a 1,000,000-row file train in bounded memory.

A list of Python dicts of token lists costs about 1.5 kB per short text (1.5 GB per million rows, several
times that during tokenization); the same rows as int32 columns of an Arrow file cost 4 bytes per token,
and memory-mapped they cost resident memory only for the pages a batch reads.

The table is written by `datasets` (`Dataset.map(batched=True)` into a cache file named by the texts, the
tokenizer and max_length), one batch of CHUNK texts at a time, and a second run on the same data and tokenizer
opens that file instead of tokenizing again. The fast tokenizer already encodes a batch on every core, so one
process maps (num_proc would split the cores it already uses).

`TokenRows` is a read-only sequence of rows as the rest of the code knows them ({"input_ids": [...], ...}):
collate, the loop and the evaluators take it where they took a list. `cached_table` is the same cache for
rows tokenized another way (token classification's words, tags and word positions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.columns import TextColumn, dataset_of
from ..paths import cache_dir
from .batching import tokenize_marked

CHUNK = 16384  # texts tokenized at once: the Python lists of one chunk are the most tokenization ever holds
KEYS = ("input_ids", "token_type_ids")  # stored; attention masks of unpadded rows are all ones and are rebuilt
CUT = "cut_length"  # a text's full length when max_length cut it, else 0


class _Chunked(Sequence):
    """A sequence over a table's record batches: per batch, (offsets, values) arrays per list column."""

    def __init__(self, chunks: list[dict[str, tuple[np.ndarray, np.ndarray]]], path: Path | None = None):
        self.chunks, self.path = chunks, path
        first = next(iter(chunks[0])) if chunks else None
        sizes = [len(c[first][0]) - 1 for c in chunks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        at = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self._row(self.chunks[at], index - int(self._starts[at]))

    def _row(self, chunk: dict, local: int):
        raise NotImplementedError


class TokenRows(_Chunked):
    """Rows of token ids ({"input_ids": [...], ...}, one key per stored list column) over the table."""

    def __init__(self, chunks: list[dict[str, tuple[np.ndarray, np.ndarray]]], mask: bool, path: Path | None = None):
        super().__init__(chunks, path)
        self.mask = mask

    def _row(self, chunk: dict, local: int) -> dict:
        row = {key: values[offsets[local] : offsets[local + 1]].tolist() for key, (offsets, values) in chunk.items()}
        if self.mask:
            row["attention_mask"] = [1] * len(row["input_ids"])
        return row

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate([np.diff(c["input_ids"][0]) for c in self.chunks] or [np.zeros(0, np.int64)])


class ListColumn(_Chunked):
    """One list column of the table as a sequence of Python lists (token classification's word positions)."""

    def _row(self, chunk: dict, local: int) -> list:
        ((offsets, values),) = chunk.values()
        return values[offsets[local] : offsets[local + 1]].tolist()

    @property
    def lengths(self) -> np.ndarray:
        """Each row's length, from the offsets alone."""
        return np.concatenate([np.diff(o) for c in self.chunks for o, _ in c.values()] or [np.zeros(0, np.int64)])


class RowsView(Sequence):
    """Some rows of a token table, by position (the rows left after a filter), read as the table's are."""

    def __init__(self, rows: _Chunked, positions):
        self.rows, self.positions = rows, np.asarray(positions, dtype=np.int64)
        self.path = rows.path

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.rows[int(self.positions[index])]

    @property
    def lengths(self) -> np.ndarray:
        return self.rows.lengths[self.positions]


def token_table(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[TokenRows, list[int]]:
    """(rows, full lengths of the texts cut at max_length) as `batching.tokenize` returns them, from the cache
    when these texts were tokenized the same way before."""
    mask = "attention_mask" in tokenizer.model_input_names
    if not texts:
        return TokenRows([], mask), []
    import datasets

    key = table_key(tokenizer, [str(max_length), str(len(texts)), str(pairs is not None)], [texts, pairs or []])
    keys = [k for k in KEYS if k in tokenizer.model_input_names or k == "input_ids"]
    features = {**{k: datasets.List(datasets.Value("int32")) for k in keys}, CUT: datasets.Value("int32")}

    def encode(batch):
        columns, marked = _encode(tokenizer, batch["text"], batch.get("pair"), max_length)
        cut = [0] * len(batch["text"])
        for i, full in marked:
            cut[i] = full
        return {**{k: columns[k] for k in keys}, CUT: cut}

    source = {"text": texts, **({"pair": pairs} if pairs else {})}
    source = dataset_of(source) or {"text": list(texts), **({"pair": [str(p) for p in pairs]} if pairs else {})}
    table, path = cached_table(key, source, encode, features)
    cut = table.column(CUT).to_numpy()
    return TokenRows(list_chunks(table, keys), mask, path), [int(x) for x in cut[cut > 0]]


def cached_table(key: str, source, encode, features: dict):
    """(the Arrow table `encode` makes of `source`'s columns batch by batch, its file): opened memory-mapped
    from the cache when the same key was written before, else written there by `datasets`' map first. `source`:
    column -> list, or a `datasets.Dataset` (a memory-mapped data table, never read whole)."""
    rows = len(source) if not isinstance(source, dict) else len(next(iter(source.values())))
    path = cache_dir() / "tokens" / f"{key}.arrow"
    if path.is_file():
        try:
            return _open(path, rows, list(features)), path
        except Exception:  # noqa: BLE001  (a damaged cache file, whatever Arrow says of it, is rebuilt, not trusted)
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, key, source, encode, features)
    return _open(path, rows, list(features)), path


def _write(path: Path, key: str, source: dict, encode, features: dict) -> None:
    """datasets' map writes the file (to a temporary file moved into place: a killed run leaves no half table)."""
    import datasets

    if isinstance(source, dict):
        source = datasets.Dataset.from_dict(source)
    with _no_progress_bars():
        source.map(
            encode,
            batched=True,
            batch_size=CHUNK,
            writer_batch_size=CHUNK,
            remove_columns=source.column_names,
            features=datasets.Features(features),
            cache_file_name=str(path),
            load_from_cache_file=False,  # `cached_table` opened it already if it was there and sound
            new_fingerprint=key,
        )


@contextlib.contextmanager
def _no_progress_bars():
    """No progress bar of datasets' own inside a run (the run reports its stages)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def _encode(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[dict, list]:
    """key -> token lists of one chunk, and the texts cut as (index, full length), as `batching.tokenize` makes
    them. A fast tokenizer's own batch encoder is used directly where it gives the same ids (twice the speed of
    the transformers call, which builds what this table does not keep); the texts longer than max_length are
    cut by the transformers call, as `tokenize` cuts them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "split_special_tokens", False):
        rows, cut = tokenize_marked(tokenizer, texts, pairs, max_length)
        return {k: [r[k] for r in rows] for k in rows[0]}, cut
    backend.no_truncation()
    backend.no_padding()
    encoded = backend.encode_batch(list(zip(texts, pairs)) if pairs else texts)
    columns = {"input_ids": [e.ids for e in encoded]}
    if "token_type_ids" in tokenizer.model_input_names:
        columns["token_type_ids"] = [e.type_ids for e in encoded]
    long = [i for i, ids in enumerate(columns["input_ids"]) if len(ids) > max_length]
    if not long:
        return columns, []
    rows, _ = tokenize_marked(
        tokenizer, [texts[i] for i in long], [pairs[i] for i in long] if pairs else None, max_length
    )
    cut = [(i, len(columns["input_ids"][i])) for i in long]
    for i, row in zip(long, rows):
        for key in columns:
            columns[key][i] = row[key]
    return columns, cut


def _open(path: Path, rows: int, columns: list[str]):
    """The table memory-mapped (datasets writes the Arrow stream format): its arrays are views of the file."""
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
    if table.num_rows != rows or not set(columns) <= set(table.column_names):
        raise ValueError("not the table of these rows")
    return table


def list_chunks(table, keys: list[str]) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per record batch, (offsets, values) numpy views of the list columns `keys`: no copy of the file."""
    chunks = []
    for batch in table.to_batches():
        arrays = {k: batch.column(batch.schema.get_field_index(k)) for k in keys}
        chunks.append({k: (a.offsets.to_numpy(), a.values.to_numpy()) for k, a in arrays.items()})
    return chunks


def table_key(tokenizer, parts: list[str], streams: list) -> str:
    """The tokenizer itself (its full definition for fast tokenizers), the settings in `parts`, and every string
    of `streams` (lists of texts, or of word lists; a data table's column by its fingerprint)."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation/padding state a previous call left on it (not the vocabulary)
        definition = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        definition = json.dumps(definition, sort_keys=True)
    else:
        definition = repr(sorted(tokenizer.get_vocab().items()))
    for part in (type(tokenizer).__name__, definition, *parts):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    for stream in streams:  # each string behind its length: no two different lists of texts read the same
        if isinstance(stream, TextColumn) and stream.path is not None:
            digest.update(b"\x04" + stream.fingerprint())  # a column of a data table: named without reading it
            continue
        digest.update(b"\x03")
        for item in stream:
            for text in item if isinstance(item, list) else [item]:
                data = str(text).encode("utf-8", "surrogatepass")
                digest.update(len(data).to_bytes(8, "little") + data)
            digest.update(b"\x01")
    return digest.hexdigest()[:32]
