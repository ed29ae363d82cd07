"""Tokenized rows as a memory-mapped table, cached on disk: what lets a 1,000,000-row file train in bounded memory.

A list of Python dicts of token lists costs about 1.5 kB per short text (1.5 GB per million rows, several
times that during tokenization); the same rows as int32 columns of an Arrow file cost 4 bytes per token,
and memory-mapped they cost resident memory only for the pages a batch reads.

The table is written by `datasets` (`Dataset.map(batched=True)` into a cache file named by the texts, the
tokenizer and max_length), one batch of CHUNK texts at a time, and a second run on the same data and tokenizer
opens that file instead of tokenizing again. The fast tokenizer already encodes a batch on every core, so one
process maps (num_proc would split the cores it already uses).

`TokenRows` is a read-only sequence of rows as the rest of the code knows them ({"input_ids": [...], ...}):
collate, the loop and the evaluators take it where they took a list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import cache_dir
from .batching import tokenize_marked

CHUNK = 16384  # texts tokenized at once: the Python lists of one chunk are the most tokenization ever holds
KEYS = ("input_ids", "token_type_ids")  # stored; attention masks of unpadded rows are all ones and are rebuilt
CUT = "cut_length"  # a text's full length when max_length cut it, else 0


class TokenRows(Sequence):
    """Rows of token ids over the table's record batches: per batch, (offsets, values) arrays per key."""

    def __init__(self, chunks: list[dict[str, tuple[np.ndarray, np.ndarray]]], mask: bool, path: Path | None = None):
        self.chunks, self.mask, self.path = chunks, mask, path
        sizes = [len(c["input_ids"][0]) - 1 for c in chunks]
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
        local = index - int(self._starts[at])
        row = {
            key: values[offsets[local] : offsets[local + 1]].tolist()
            for key, (offsets, values) in self.chunks[at].items()
        }
        if self.mask:
            row["attention_mask"] = [1] * len(row["input_ids"])
        return row

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate([np.diff(c["input_ids"][0]) for c in self.chunks] or [np.zeros(0, np.int64)])


def token_table(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[TokenRows, list[int]]:
    """(rows, full lengths of the texts cut at max_length) as `batching.tokenize` returns them, from the cache
    when these texts were tokenized the same way before."""
    mask = "attention_mask" in tokenizer.model_input_names
    if not texts:
        return TokenRows([], mask), []
    key = _key(tokenizer, texts, pairs, max_length)
    path = cache_dir() / "tokens" / f"{key}.arrow"
    if path.is_file():
        try:
            return _open(path, len(texts), mask)
        except Exception:  # noqa: BLE001  (a damaged cache file, whatever Arrow says of it, is rebuilt, not trusted)
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, key, tokenizer, texts, pairs, max_length)
    return _open(path, len(texts), mask)


def _write(path: Path, key: str, tokenizer, texts, pairs, max_length: int) -> None:
    """datasets' map writes the file (to a temporary file moved into place: a killed run leaves no half table)."""
    import datasets

    source = datasets.Dataset.from_dict({"text": texts, **({"pair": [str(p) for p in pairs]} if pairs else {})})
    keys = [k for k in KEYS if k in tokenizer.model_input_names or k == "input_ids"]
    features = datasets.Features(
        {**{k: datasets.List(datasets.Value("int32")) for k in keys}, CUT: datasets.Value("int32")}
    )

    def encode(batch):
        columns, marked = _encode(tokenizer, batch["text"], batch.get("pair"), max_length)
        cut = [0] * len(batch["text"])
        for i, full in marked:
            cut[i] = full
        return {**{k: columns[k] for k in keys}, CUT: cut}

    with _no_progress_bars():
        source.map(
            encode,
            batched=True,
            batch_size=CHUNK,
            writer_batch_size=CHUNK,
            remove_columns=source.column_names,
            features=features,
            cache_file_name=str(path),
            load_from_cache_file=False,  # `token_table` opened it already if it was there and sound
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


def _open(path: Path, rows: int, mask: bool) -> tuple[TokenRows, list[int]]:
    """The table memory-mapped: each record batch's arrays are views of the file, never copies."""
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()  # datasets writes the Arrow stream format
    if table.num_rows != rows or "input_ids" not in table.column_names:
        raise ValueError("not the table of these texts")
    keys = [k for k in KEYS if k in table.column_names]
    chunks = []
    for batch in table.to_batches():
        arrays = {k: batch.column(batch.schema.get_field_index(k)) for k in keys}
        chunks.append({k: (a.offsets.to_numpy(), a.values.to_numpy()) for k, a in arrays.items()})
    cut = table.column(CUT).to_numpy()
    return TokenRows(chunks, mask, path), [int(x) for x in cut[cut > 0]]


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
