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
import itertools
import json
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
    mask = False
    for start in range(0, len(texts), CHUNK):
        columns, long = _encode(
            tokenizer, texts[start : start + CHUNK], pairs[start : start + CHUNK] if pairs else None, max_length
        )
        cut += long
        # unpadded rows: every attention mask is all ones, rebuilt on reading instead of stored
        mask = "attention_mask" in columns
        for key in (k for k in KEYS if k in columns and k != "attention_mask"):
            ids = columns[key]
            sizes = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(sizes.sum()))
            parts.setdefault(key, []).append(flat)  # C-level iteration: a Python loop per token costs a minute
            lengths.setdefault(key, []).append(sizes)
    arrays, names = [], []
    for key in parts:
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths[key]))]).astype(np.int64)
        arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(parts[key]))))
        names.append(key)
    meta = {"mask": "1" if mask else "0", "cut": ",".join(map(str, cut)), "rows": str(len(texts))}
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _encode(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[dict, list[int]]:
    """key -> token lists of one chunk, and the full lengths of the texts cut, as `batching.tokenize` makes them.
    A fast tokenizer's own batch encoder is used directly where it gives the same ids (twice the speed of the
    transformers call, which builds what this table does not keep); the texts longer than max_length are cut
    by the transformers call, as `tokenize` cuts them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "split_special_tokens", False):
        rows, long = tokenize(tokenizer, texts, pairs, max_length)
        return ({k: [r[k] for r in rows] for k in rows[0]} if rows else {}), long
    backend.no_truncation()
    backend.no_padding()
    encoded = backend.encode_batch(list(zip(texts, pairs)) if pairs else texts)
    names = tokenizer.model_input_names
    columns = {"input_ids": [e.ids for e in encoded]}
    if "token_type_ids" in names:
        columns["token_type_ids"] = [e.type_ids for e in encoded]
    if "attention_mask" in names:
        columns["attention_mask"] = []  # all ones: not stored
    long = [i for i, ids in enumerate(columns["input_ids"]) if len(ids) > max_length]
    if long:
        rows, _ = tokenize(tokenizer, [texts[i] for i in long], [pairs[i] for i in long] if pairs else None, max_length)
        full = [len(columns["input_ids"][i]) for i in long]
        for i, row in zip(long, rows):
            for key in columns:
                if key != "attention_mask":
                    columns[key][i] = row[key]
        return columns, full
    return columns, []


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
    if backend is not None:  # without the truncation/padding state a previous call left on it (not the vocabulary)
        definition = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        definition = json.dumps(definition, sort_keys=True)
    else:
        definition = repr(sorted(tokenizer.get_vocab().items()))
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
