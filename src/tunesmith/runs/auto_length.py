"""`train.max_length` from the data: 256 tokens unless the training examples run longer.

256 covers short texts (reviews, support messages, headlines) and keeps padding cheap. Long documents lose
their ends at 256, and a baseline that truncates at the tokenizer's 512 scored higher on long reviews
(docs/why-defaults.md). So when more
than 5% of the training texts are longer, the limit rises to their 95th percentile (in steps of 64), up to the
model's own limit and 512: attention cost grows with the square of the length, and encoders are pretrained
at 512 positions at most. Length-grouped batches keep the cost of the long rows to the long rows.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT = 256
CAP = 512
GEN_CAP = 1024
COVER = 95  # percent of training texts kept whole
SAMPLE = 2000  # texts measured; the percentile of a seeded sample is stable to a few tokens


def auto_max_length(recipe, tokenizer, texts: list[str], pairs: list[str] | None = None):
    """(recipe, reason): a copy of the recipe with train.max_length chosen from the texts when the recipe leaves
    it unset and the texts need more than DEFAULT; else the recipe itself and None."""
    if "max_length" in recipe.train.model_fields_set or not texts:
        return recipe, None
    lengths = token_lengths(tokenizer, texts, pairs, recipe.train.seed)
    return from_lengths(recipe, lengths, lambda: model_limit(tokenizer, recipe.model.name), "training texts")


def from_lengths(recipe, lengths: np.ndarray, limit, what: str, cap: int = CAP):
    """(recipe, reason) from measured token lengths; `limit()` reads the model's own limit only when needed. Callers
    check first that the recipe leaves max_length unset (before measuring anything)."""
    if not len(lengths):
        return recipe, None
    p95 = int(np.percentile(lengths, COVER))
    if p95 <= DEFAULT:  # most sets: decided without reading the model's config
        return recipe, None
    chosen = min(limit(), cap, math.ceil(p95 / 64) * 64)
    if chosen <= DEFAULT:
        return recipe, None
    recipe = recipe.model_copy(deep=True)
    recipe.train.max_length = chosen
    longer = float((lengths > DEFAULT).mean())
    return recipe, (
        f"max_length {chosen}: {longer:.0%} of the {what} are longer than {DEFAULT} tokens ({COVER}th percentile {p95})"
    )


def sample_indices(n: int, seed: int) -> range | np.ndarray:
    """Which of n examples are measured: all, or a seeded sample of SAMPLE."""
    return np.random.default_rng(seed).choice(n, SAMPLE, replace=False) if n > SAMPLE else range(n)


def token_lengths(tokenizer, texts: list[str], pairs: list[str] | None, seed: int) -> np.ndarray:
    picked = sample_indices(len(texts), seed)
    args = ([texts[i] for i in picked],) + (([pairs[i] for i in picked],) if pairs else ())
    return np.array([len(ids) for ids in tokenizer(*args, truncation=False, verbose=False)["input_ids"]])


def model_limit(tokenizer, model_name: str, cap: int = CAP) -> int:
    """The smaller of the tokenizer's stated limit (transformers writes a huge sentinel when there is none) and the
    model's position table, at most `cap`."""
    from transformers import AutoConfig

    from ..models.loading import resolve_weights

    limits = [cap, getattr(tokenizer, "model_max_length", None) or cap]
    config = AutoConfig.from_pretrained(resolve_weights(model_name))
    config = getattr(config, "text_config", None) or config
    limits.append(getattr(config, "max_position_embeddings", None) or cap)
    return int(min(limits))
