"""Few-shot classification for encoders, the SetFit recipe: contrastive pairs tune the sentence
embedding body, then a logistic-regression head is fit on the tuned embeddings.

Pairs are budgeted (`pairs_per_example` x examples, half same-class, half different-class) instead
of "all pairs": with many classes or rows, all pairs grows quadratically (SetFit's pair explosion),
while a budget keeps the cost linear in the number of examples.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from itertools import combinations

import numpy as np
import torch

from ..engine.loop import Hooks

ENUMERATE_LIMIT = 200_000  # below this many candidate pairs, sample from the full list; above, by rejection


def make_pairs(labels: list[str], budget: int, seed: int) -> list[tuple[int, int, float]]:
    """(i, j, target): target 1.0 for same class, 0.0 for different; half of each; never (i, i).

    Distinct pairs are used first; only when a kind runs out (tiny data) are pairs repeated.
    """
    rng = random.Random(seed)
    by_class = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    n_pos = budget // 2
    pos = _sample_pairs(
        _positive_pool(by_class), _count_pos(by_class), n_pos, rng, lambda: _random_positive(by_class, rng)
    )
    neg = _sample_pairs(
        _negative_pool(by_class),
        _count_neg(by_class, len(labels)),
        budget - n_pos,
        rng,
        lambda: _random_negative(by_class, rng),
    )
    pairs = [(i, j, 1.0) for i, j in pos] + [(i, j, 0.0) for i, j in neg]
    rng.shuffle(pairs)
    return pairs


def _count_pos(by_class) -> int:
    return sum(math.comb(len(m), 2) for m in by_class.values())


def _count_neg(by_class, n: int) -> int:
    return math.comb(n, 2) - _count_pos(by_class)


def _positive_pool(by_class):
    return lambda: [p for members in by_class.values() for p in combinations(members, 2)]


def _negative_pool(by_class):
    classes = list(by_class.values())
    return lambda: [(i, j) for a, b in combinations(classes, 2) for i in a for j in b]


def _random_positive(by_class, rng) -> tuple[int, int] | None:
    eligible = [m for m in by_class.values() if len(m) >= 2]
    if not eligible:
        return None
    i, j = rng.sample(rng.choice(eligible), 2)
    return (min(i, j), max(i, j))


def _random_negative(by_class, rng) -> tuple[int, int] | None:
    if len(by_class) < 2:
        return None
    a, b = rng.sample(list(by_class.values()), 2)
    i, j = rng.choice(a), rng.choice(b)
    return (min(i, j), max(i, j))


def _sample_pairs(pool, total: int, want: int, rng, draw) -> list[tuple[int, int]]:
    if want <= 0 or total == 0:
        return []
    if total <= ENUMERATE_LIMIT:
        candidates = pool()
        if want <= len(candidates):
            return rng.sample(candidates, want)
        return candidates + [rng.choice(candidates) for _ in range(want - len(candidates))]
    seen: set[tuple[int, int]] = set()
    while len(seen) < want:  # total is large, so collisions are rare
        seen.add(draw())
    return list(seen)


def pair_rows(rows: list[dict], pairs: list[tuple[int, int, float]]) -> tuple[list[dict], list[float]]:
    """Two tokenized texts per row (input_ids / pair_input_ids), the examples' indices, and the similarity targets."""
    out = []
    for i, j, _ in pairs:
        a, b = rows[i], rows[j]
        out.append(
            {
                "input_ids": a["input_ids"],
                "attention_mask": a["attention_mask"],
                "pair_input_ids": b["input_ids"],
                "pair_attention_mask": b["attention_mask"],
                "pair_index": [i, j],
            }
        )
    return out, [t for _, _, t in pairs]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def cosine_pair_loss(model, batch: dict) -> torch.Tensor:
    """SetFit's objective: cosine similarity of the two mean-pooled embeddings regressed onto 1 / 0.

    With K examples per class the pairs of a batch reuse few texts (16 examples make every pair of a
    2-class set), so each distinct example is embedded once per step and its embedding serves all its
    pairs: the same loss and gradient as embedding both sides of every pair, at a fraction of the
    compute (one dropout mask per example and step instead of one per pair side).
    """
    ids, masks, order = _distinct_texts(batch)
    hidden = model(input_ids=ids, attention_mask=masks).last_hidden_state
    emb = mean_pool(hidden, masks).float()
    a, b = emb[order[0::2]], emb[order[1::2]]
    cos = torch.nn.functional.cosine_similarity(a, b)
    return torch.nn.functional.mse_loss(cos, batch["labels"].float())


def _distinct_texts(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows of the batch's distinct examples (trimmed to their longest) and, for each pair side in
    order a0, b0, a1, b1, ..., the row holding its example."""
    flat = batch["pair_index"].flatten()
    distinct, order = torch.unique(flat, return_inverse=True)
    width = max(batch["input_ids"].shape[1], batch["pair_input_ids"].shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731  (padded positions are masked out)
    sides_ids = torch.stack([pad(batch["input_ids"]), pad(batch["pair_input_ids"])], 1).flatten(0, 1)
    sides_mask = torch.stack([pad(batch["attention_mask"]), pad(batch["pair_attention_mask"])], 1).flatten(0, 1)
    first = torch.stack([(flat == d).nonzero()[0, 0] for d in distinct])
    masks = sides_mask[first]
    keep = int(masks.sum(1).max())
    return sides_ids[first][:, :keep], masks[:, :keep], order


def fit_head(x: np.ndarray, y: list[int], seed: int):
    """Logistic regression on L2-normalised embeddings (as SetFit's head sees sentence-transformers output)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed).fit(normalize(x), y)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def make_hooks(evaluate) -> Hooks:
    return Hooks(evaluate=evaluate, compute_loss=cosine_pair_loss)


def make_set_pairs(label_sets: list[list[str]], budget: int, seed: int) -> list[tuple[int, int, float]]:
    """Multi-label pairs: target 1.0 when two texts share a label, 0.0 when their label sets are disjoint; half
    of each. Two rows without any label say nothing about each other and are never paired."""
    rng, sets = random.Random(seed), [frozenset(s) for s in label_sets]

    def target(i: int, j: int) -> float | None:
        return 1.0 if sets[i] & sets[j] else (0.0 if sets[i] or sets[j] else None)

    n, n_pos = len(sets), budget // 2
    pools: dict[float, list[tuple[int, int]]] = {1.0: [], 0.0: []}
    if math.comb(n, 2) <= ENUMERATE_LIMIT:
        for i, j in combinations(range(n), 2):
            t = target(i, j)
            if t is not None:
                pools[t].append((i, j))
    else:  # many rows: a random sample of pairs holds both kinds in their natural proportion
        for _ in range(20 * budget):
            i, j = sorted(rng.sample(range(n), 2))
            t = target(i, j)
            if t is not None:
                pools[t].append((i, j))
    pairs = []
    for t, want in ((1.0, n_pos), (0.0, budget - n_pos)):
        pool = pools[t]
        if pool:
            chosen = (
                rng.sample(pool, want)
                if want <= len(pool)
                else pool + [rng.choice(pool) for _ in range(want - len(pool))]
            )
            pairs += [(i, j, t) for i, j in chosen]
    rng.shuffle(pairs)
    return pairs
