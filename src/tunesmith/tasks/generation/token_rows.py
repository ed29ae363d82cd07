"""Supervised generation rows (token ids and labels) as a memory-mapped token table, cached on disk.

The chat template is rendered and tokenized one sample at a time (`encode_sample`: labels from assistant spans, long
prompts cut in their middle), so this is slower per row than an encoder's batch tokenizer; the table makes it a cost
paid once per data set and tokenizer: a second run, a sweep trial or a seed opens the file instead. Rows are read
from the file as the batches need them, so a large SFT set does not sit in memory as Python lists of token ids.
"""

from __future__ import annotations

import json

import numpy as np

from ...engine.token_table import RowsView, TokenRows, cached_table, list_chunks, table_key
from .formatting import Encoded, encode, encode_sample

KEYS = ("input_ids", "labels")


def encode_rows(tokenizer, samples: list[list[dict]], max_length: int, loss_on: str) -> Encoded:
    """What `encode` gives, the rows on a token table keyed by every sample, the tokenizer, its chat template,
    max_length and loss_on."""
    if not samples:
        return encode(tokenizer, samples, max_length, loss_on)
    import datasets

    from ...data.chat_table import Samples, canonical
    from ...data.columns import dataset_of

    # a file's samples are a table's canonical JSON already: read from it memory-mapped, named without reading
    texts = samples.column if isinstance(samples, Samples) else [canonical(sample) for sample in samples]
    settings = ["sft", str(max_length), loss_on, str(getattr(tokenizer, "chat_template", None)), str(len(texts))]
    features = {
        **{k: datasets.List(datasets.Value("int32")) for k in KEYS},
        "cut": datasets.Value("bool"),
        "masked": datasets.Value("bool"),
    }

    def encode_batch(batch):
        out = {k: [] for k in (*KEYS, "cut", "masked")}
        for text in batch["sample"]:
            row, cut = encode_sample(tokenizer, json.loads(text), max_length, loss_on)
            out["input_ids"].append(row["input_ids"])
            out["labels"].append(row["labels"])
            out["cut"].append(cut)
            # position 0 is never a target (nothing predicts it), so it does not count as learnable
            out["masked"].append(all(label == -100 for label in row["labels"][1:]))
        return out

    key = table_key(tokenizer, settings, [texts])
    table, path = cached_table(key, dataset_of({"sample": texts}) or {"sample": list(texts)}, encode_batch, features)
    flags = {k: np.flatnonzero(table.column(k).to_numpy(zero_copy_only=False)).tolist() for k in ("cut", "masked")}
    rows = TokenRows(list_chunks(table, list(KEYS)), mask=True, path=path)
    return Encoded(rows, truncated=flags["cut"], fully_masked=flags["masked"])


def learnable_rows(enc: Encoded):
    """The rows with a token to learn from, as a view of the table (no row is built before a batch needs it)."""
    dropped = set(enc.fully_masked)
    return RowsView(enc.rows, [i for i in range(len(enc.rows)) if i not in dropped]) if dropped else enc.rows
