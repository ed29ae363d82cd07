"""What every part of the data check shares: the report, reading a recipe's splits, token-length statistics."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import TunesmithError

LENGTH_SAMPLE = 20_000  # token lengths are measured on at most this many rows (seeded sample)
LENGTH_BLOCK = 2_000  # texts tokenized at once for them
SPLITS = ("train", "validation", "test")


@dataclass
class Report:
    datasets: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "datasets": self.datasets}


def read_splits(data, name: str, report: Report, read) -> dict:
    """split -> read(path, split) for every split the data section names; what cannot be read becomes
    an error in the report (and the split is left out) instead of stopping the check."""
    out = {}
    for split in SPLITS:
        path = getattr(data, split)
        if path is None:
            continue
        try:
            out[split] = read(path, split)
        except TunesmithError as err:
            report.errors.append(f"{name}: {err}")
    return out


def normalise(text: str) -> str:
    """Case and spacing do not make a different example."""
    return re.sub(r"\s+", " ", text).strip().casefold()


# ----------------------------------------------------------------------------------- token lengths


def token_lengths(tokenizer, texts: list[str], max_length: int, seed: int, words: bool = False) -> dict:
    """Histogram and truncation of the texts' token counts (special tokens included), on a seeded sample.
    `words`: each text is a list of words (token classification)."""
    sampled = len(texts) > LENGTH_SAMPLE
    if sampled:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in rng.choice(len(texts), LENGTH_SAMPLE, replace=False)]
    from ..engine.batching import unknown_only

    lengths, unknown = [], 0
    for start in range(0, len(texts), LENGTH_BLOCK):  # a fast tokenizer's encodings weigh kilobytes each: a block
        block = list(texts[start : start + LENGTH_BLOCK])  # the tokenizer takes a list, not a column
        ids = tokenizer(block, add_special_tokens=True, truncation=False, is_split_into_words=words, verbose=False)
        ids = ids["input_ids"]
        lengths += [len(row) for row in ids]
        unknown += unknown_only(tokenizer, [{"input_ids": row} for row in ids])
    return {**length_stats(np.array(lengths), max_length, sampled), "unknown_only": unknown}


def length_stats(lengths: np.ndarray, max_length: int, sampled: bool = False) -> dict:
    edges = [e for e in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if e < lengths.max()] + [int(lengths.max())]
    edges = sorted(set(edges + ([max_length] if max_length < lengths.max() else [])))
    hist, low = [], 0
    for edge in edges:
        hist.append([f"{low + 1}-{edge}", int(((lengths > low) & (lengths <= edge)).sum())])
        low = edge
    over = lengths[lengths > max_length]
    return {
        "count": int(len(lengths)),
        "sampled": sampled,
        "mean": round(float(lengths.mean()), 1),
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "max_length": max_length,
        "truncated": int(len(over)),
        "truncated_share": round(len(over) / len(lengths), 4),
        "tokens_cut_mean": round(float((over - max_length).mean()), 1) if len(over) else 0.0,
        "histogram": hist,
    }


def length_warning(stats: dict, name: str, report: Report) -> None:
    if stats["truncated"]:
        report.warnings.append(
            f"{name}: {stats['truncated']} of {stats['count']} training texts ({stats['truncated_share']:.1%}) exceed "
            f"train.max_length={stats['max_length']} tokens and lose {stats['tokens_cut_mean']:.0f} tokens on average "
            f"(longest {stats['max']}). Raise train.max_length if the end of a text matters."
        )
