"""Tokenize once, batch by similar length, pad per batch: little compute is spent on padding."""

from __future__ import annotations

import random

import torch


def tokenize(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> tuple[list[dict], list[int]]:
    """Token ids per example (no padding), and the full lengths of the examples cut at max_length."""
    rows, cut = tokenize_marked(tokenizer, texts, pairs, max_length)
    return rows, [full for _, full in cut]


def tokenize_marked(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int):
    """As `tokenize`, the cut examples given as (index, full length)."""
    texts, pairs = list(texts), None if pairs is None else list(pairs)  # the tokenizer takes lists, not columns
    enc = tokenizer(texts, pairs, truncation=False, verbose=False)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    rows = [{k: enc[k][i] for k in keys} for i in range(len(texts))]
    long = [i for i, r in enumerate(rows) if len(r["input_ids"]) > max_length]
    if long:  # re-encode only the long ones, so pairs are cut the tokenizer's way
        cut = tokenizer(
            [texts[i] for i in long],
            [pairs[i] for i in long] if pairs else None,
            truncation=True,
            max_length=max_length,
        )
        for j, i in enumerate(long):
            rows[i] = {k: cut[k][j] for k in keys}
    return rows, [(i, len(enc["input_ids"][i])) for i in long]


def row_lengths(rows) -> list[int]:
    """Tokens per row: a token table knows them without building its rows."""
    lengths = getattr(rows, "lengths", None)
    return lengths.tolist() if lengths is not None else [len(r["input_ids"]) for r in rows]


# Training batches are sorted by length inside shuffled windows of a few batches, then shuffled: the smaller the
# window, the more random each batch (SGD's noise) and the more padding. HF's LengthGroupedSampler sorts windows
# of 50 batches, which cost accuracy on long documents; small windows on short sentences cost speed (padding).
# So the window is the smallest whose padding stays within PAD_BUDGET of the real tokens (docs/why-defaults.md).
WINDOWS = (1, 2, 4, 8, 16, 32, 50)
PAD_BUDGET = 1.2


def grouping_window(lengths: list[int], batch_size: int, seed: int) -> int:
    """The smallest window in WINDOWS whose batches hold at most PAD_BUDGET x the real tokens (one seeded draw)."""
    real = max(1, sum(lengths))
    for window in WINDOWS:
        batches = length_grouped_batches(lengths, batch_size, seed, window=window)
        if sum(max(lengths[i] for i in b) * len(b) for b in batches) <= PAD_BUDGET * real:
            return window
    return WINDOWS[-1]


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, window: int = 50) -> list[list[int]]:
    """Shuffle, sort by length inside windows of `window` batches, then shuffle batch order.

    Keeps the randomness of SGD while batches hold examples of similar length (HF's group_by_length idea);
    `window=1` gives plain shuffled batches.
    """
    idx = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(idx)
    size = batch_size * window
    ordered = []
    for start in range(0, len(idx), size):
        ordered += sorted(idx[start : start + size], key=lambda i: lengths[i], reverse=True)
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    rng.shuffle(batches)
    return batches


# inference on a CPU: padded tokens at most 1.1x the real ones (+8 per row) before a batch is cut; looser limits
# were slower and tighter ones no faster (docs/why-defaults.md).
PAD_SLACK = 1.1


def inference_batches(lengths: list[int], batch_size: int, cpu: bool) -> list[list[int]]:
    """Longest first, in order; on a CPU a batch also ends where padding would cost more than PAD_SLACK.

    A CPU spends its time on every padded token, so /v1/classify's batches of concurrent requests gain from
    being cut into groups of similar length.
    On a GPU padding is nearly free and one big batch is faster."""
    ordered = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    total = 0
    for i in ordered:
        batch = batches[-1] if batches else None
        longest = lengths[batch[0]] if batch else 0
        n = len(batch) + 1 if batch else 1
        too_padded = cpu and longest * n > PAD_SLACK * (total + lengths[i]) + 8 * n
        if batch is None or len(batch) == batch_size or too_padded:
            batches.append([i])
            total = lengths[i]
        else:
            batch.append(i)
            total += lengths[i]
    return batches


# A CPU keeps kernels and buffers for each input shape it meets: SmolLM2 LoRA steps on rows of a new length each
# (200-300 tokens, micro-batch 1) grew RSS from 2.0 to 2.8 GB in 40 steps and slowed down; the same rows rounded
# up to a multiple of 16 or 64 stayed flat (1.9-2.0 GB). Widths from ROUNDED_FROM up are rounded to 8 steps per
# doubling (at most 1/8 more tokens, ~1/16 on average); shorter batches keep their width (few shapes, little held).
ROUNDED_FROM = 128


def padded_width(longest: int) -> int:
    """The width a batch whose longest row has `longest` tokens is padded to."""
    if longest < ROUNDED_FROM:
        return longest
    step = 1 << (longest.bit_length() - 4)
    return -(-longest // step) * step


def collate(rows: list[dict], pad_id: int, labels: list[int] | None = None, cap: int | None = None) -> dict:
    """Pad a list of tokenized rows to the longest in the batch (token labels with -100: no loss on padding);
    with `cap` (train.max_length, within the model's positions), rounded up by `padded_width` to at most `cap`."""
    batch = {}
    fills = {"input_ids": pad_id, "pair_input_ids": pad_id, "rejected_input_ids": pad_id}
    fills.update(labels=-100, rejected_labels=-100)
    for key in rows[0]:
        if not isinstance(rows[0][key], list):  # a number per row (a preference pair's reference log-probability)
            batch[key] = torch.tensor([r[key] for r in rows])
            continue
        fill, width = fills.get(key, 0), max(len(r[key]) for r in rows)  # per key: pair rows hold two texts
        width = max(width, min(padded_width(width), cap)) if cap else width
        batch[key] = torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows], dtype=torch.long)
    if labels is not None:
        batch["labels"] = torch.tensor(labels)  # class ids (long) or similarity targets (float)
    return batch


def iterate(rows: list[dict], batches: list[list[int]], pad_id: int, label_ids: list[int] | None = None, cap=None):
    """Padded batches; `label_ids` are per-example class ids (classification), token labels live in the rows."""
    for batch in batches:
        ids = None if label_ids is None else [label_ids[i] for i in batch]
        yield collate([rows[i] for i in batch], pad_id, ids, cap)


def unknown_only(tokenizer, rows: list[dict]) -> int:
    """How many rows hold no token the vocabulary knows (every piece is [UNK]: emoji- or script-only text
    for a vocabulary without them). The model sees the same input for all of them."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0
    special = set(tokenizer.all_special_ids) - {unk}
    chunks = getattr(rows, "chunks", None)
    if chunks is not None:  # a token table: counted on its arrays, without building a million rows
        return sum(_unknown_only(*chunk["input_ids"], unk, special) for chunk in chunks)
    return sum(1 for r in rows if {t for t in r["input_ids"] if t not in special} == {unk})


def _unknown_only(offsets, values, unk: int, special: set) -> int:
    import numpy as np

    values = values[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    if not len(starts):
        return 0
    known = (~np.isin(values, list(special)) & (values != unk)).astype(np.int64)
    unknown = (values == unk).astype(np.int64)
    return int(((np.add.reduceat(known, starts) == 0) & (np.add.reduceat(unknown, starts) > 0)).sum())
