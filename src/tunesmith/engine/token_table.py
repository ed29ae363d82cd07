"""Tokenized rows as a memory-mapped table, cached on disk: what lets a 1,000,000-row file train in bounded memory.

A list of Python dicts of token lists costs about 1.5 kB per short text (1.5 GB per million rows, several
times that during tokenization); the same rows as int32 columns of an Arrow file cost 4 bytes per token,
and memory-mapped they cost resident memory only for the pages a batch reads. The file is written once per
(texts, tokenizer, max_length) and a second run on the same data and tokenizer opens it instead of
tokenizing again.

`TokenRows` is a read-only sequence of rows as the rest of the code knows them ({"input_ids": [...], ...}):
collate, the loop and the evaluators take it where they took a list.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import cache_dir
from .batching import tokenize

CHUNK = 16384  # texts tokenized at once: the Python lists of one chunk are the most tokenization ever holds
KEYS = ("input_ids", "token_type_ids", "attention_mask")


class TokenRows(Sequence):
    """Rows of token ids over (offsets, values) arrays per key; attention masks of unpadded rows are all ones and
    are not stored."""

    def __init__(self, columns: dict[str, tuple[np.ndarray, np.ndarray]], mask: bool, path: Path | None = None):
        self.columns, self.mask, self.path = columns, mask, path
        self._offsets = columns["input_ids"][0]

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = {}
        for key, (offsets, values) in self.columns.items():
            row[key] = values[offsets[index] : offsets[index + 1]].tolist()
        if self.mask:
            row["attention_mask"] = [1] * len(row["input_ids"])
        return row

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self._offsets)


def token_table(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[TokenRows, list[int]]:
    """(rows, full lengths of the texts cut at max_length) as `batching.tokenize` returns them, from the cache
    when these texts were tokenized the same way before."""
    import pyarrow as pa

    if not texts:
        return TokenRows({"input_ids": (np.zeros(1, np.int64), np.zeros(0, np.int32))}, True), []
    path = cache_dir() / "tokens" / f"{_key(tokenizer, texts, pairs, max_length)}.arrow"
    if path.is_file():
        try:
            return _open(path)
        except (OSError, pa.ArrowInvalid, KeyError, ValueError):  # a damaged cache file is rebuilt, not trusted
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    _write(partial, tokenizer, texts, pairs, max_length)
    partial.replace(path)
    return _open(path)


def _write(path: Path, tokenizer, texts, pairs, max_length: int) -> None:
    import pyarrow as pa

    parts: dict[str, list[np.ndarray]] = {}
    lengths: dict[str, list[np.ndarray]] = {}
    cut: list[int] = []
    for start in range(0, len(texts), CHUNK):
        rows, long = tokenize(
            tokenizer,
            texts[start : start + CHUNK],
            pairs[start : start + CHUNK] if pairs else None,
            max_length,
        )
        cut += long
        for key in (k for k in KEYS if rows and k in rows[0]):
            parts.setdefault(key, []).append(np.fromiter((t for r in rows for t in r[key]), dtype=np.int32))
            lengths.setdefault(key, []).append(np.fromiter((len(r[key]) for r in rows), dtype=np.int64))
    mask = "attention_mask" in parts and all(np.all(p == 1) for p in parts["attention_mask"])
    arrays, names = [], []
    for key in parts:
        if key == "attention_mask" and mask:
            continue
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths[key]))]).astype(np.int64)
        arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(parts[key]))))
        names.append(key)
    meta = {"mask": "1" if mask else "0", "cut": ",".join(map(str, cut)), "rows": str(len(texts))}
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _open(path: Path) -> tuple[TokenRows, list[int]]:
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()  # one chunk as written: no copy
        columns[name] = (column.offsets.to_numpy(), column.values.to_numpy())
    if int(meta["rows"]) != len(columns["input_ids"][0]) - 1:
        raise ValueError("row count does not match")
    cut = [int(x) for x in meta["cut"].split(",") if x]
    return TokenRows(columns, meta["mask"] == "1", path), cut


def _key(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> str:
    """The texts, the pairs, max_length and the tokenizer itself (its full definition for fast tokenizers)."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    for part in (type(tokenizer).__name__, definition, str(max_length), str(len(texts)), str(pairs is not None)):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x01")
    for pair in pairs or []:
        digest.update(str(pair).encode("utf-8", "surrogatepass"))
        digest.update(b"\x01")
    return digest.hexdigest()[:32]
