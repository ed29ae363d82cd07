"""Continual learning strategies: replay buffer, EWC, LwF, a head that grows, and the forgetting metrics.

Replay keeps a bounded, class-balanced sample of past examples (reservoir sampling, Vitter's
Algorithm R per class) and mixes it into each new experience. EWC (Kirkpatrick et al. 2017) pulls
the weights that mattered for past experiences (diagonal Fisher information) back towards their old
values. LwF (Li & Hoiem 2016) distils the previous model's outputs on the new data into the new model.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from ..models.loading import HEAD_MODULES


class Reservoir:
    """At most `size` examples, the same share per class, each a uniform sample of its class's stream."""

    def __init__(self, size: int, seed: int, items: dict | None = None, seen: dict | None = None):
        self.size, self.rng = size, random.Random(seed)
        self.items: dict[str, list] = items or {}  # label -> kept examples
        self.seen: dict[str, int] = seen or {}  # label -> examples offered so far

    def add(self, example, label: str) -> None:
        if label not in self.items:
            self.items[label], self.seen[label] = [], 0
            self._shrink()
        kept, cap = self.items[label], self.capacity
        self.seen[label] += 1
        if len(kept) < cap:
            kept.append(example)
        else:
            j = self.rng.randrange(self.seen[label])
            if j < cap:
                kept[j] = example

    @property
    def capacity(self) -> int:
        return max(1, self.size // max(1, len(self.items)))

    def _shrink(self) -> None:
        """A new class arrived: every class gives up places at random, which keeps each sample uniform."""
        cap = self.capacity
        for label, kept in self.items.items():
            if len(kept) > cap:
                self.items[label] = self.rng.sample(kept, cap)

    def sample(self, n: int) -> list[tuple]:
        pool = [(example, label) for label, kept in sorted(self.items.items()) for example in kept]
        return self.rng.sample(pool, min(n, len(pool)))

    def __len__(self) -> int:
        return sum(map(len, self.items.values()))


def head_of(model) -> tuple[str, torch.nn.Linear]:
    """The output layer of a HF sequence classifier (BERT's `classifier`, Llama's `score`)."""
    for name in HEAD_MODULES:
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Linear):
            return name, module
    raise TypeError(f"{type(model).__name__}: no linear classification head found ({', '.join(HEAD_MODULES)}).")


def grow_head(model, labels: list[str]) -> None:
    """Extend the head to `labels` (old labels first, in order): old rows are copied, so old logits stay
    exactly the same; new rows start small, as a fresh head does."""
    name, old = head_of(model)
    extra = len(labels) - old.out_features
    if extra <= 0:
        return
    new = torch.nn.Linear(old.in_features, len(labels), bias=old.bias is not None).to(
        old.weight.device, old.weight.dtype
    )
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, std=getattr(model.config, "initializer_range", 0.02))
        new.weight[: old.out_features] = old.weight
        if old.bias is not None:
            new.bias.zero_()
            new.bias[: old.out_features] = old.bias
    setattr(model, name, new)
    model.num_labels = model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}


def fisher_diagonal(model, batches) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: mean over examples of the squared gradient of log p(y|x), one example
    per backward pass (squaring a batch gradient would underestimate it)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    model.eval()
    for batch in batches:
        for i in range(len(batch["input_ids"])):
            one = {k: v[i : i + 1] for k, v in batch.items()}
            model.zero_grad(set_to_none=True)
            model(**one).loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
            count += 1
    model.zero_grad(set_to_none=True)
    model.train()
    return {n: f / max(count, 1) for n, f in fisher.items()}


def ewc_penalty(model, fisher: dict, anchor: dict, strength: float) -> torch.Tensor:
    """strength/2 * sum F (theta - theta*)^2; a grown head is anchored on its old rows only."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        if name in fisher and p.requires_grad:
            f, a = fisher[name], anchor[name]
            rows = f.shape[0]
            total = total + (f * (p[:rows] - a) ** 2).sum()
    return strength / 2 * total


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(old || new) on the old classes at temperature T, scaled by T^2 (Hinton et al. 2015)."""
    t = temperature
    old = old_logits.float() / t
    new = new_logits[:, : old.shape[1]].float() / t
    return (
        torch.nn.functional.kl_div(new.log_softmax(-1), old.log_softmax(-1), log_target=True, reduction="batchmean")
        * t
        * t
    )


def continual_metrics(matrix: list[list[float | None]], initial: list[float | None]) -> dict:
    """matrix[i][j] = accuracy on experience j after training on experience i; `initial[j]` = before any.

    average accuracy = mean of the last row; BWT = mean over j < T of (R[T][j] - R[j][j]) (negative =
    forgetting); FWT = mean over j > 1 of (R[j-1][j] - initial[j]) (Lopez-Paz & Ranzato 2017). Cells
    that were never measured (an experience added later by `tunesmith update`) are None and skipped.
    """
    t = len(matrix)
    last = matrix[-1]
    bwt = [last[j] - matrix[j][j] for j in range(t - 1)]
    fwt = [
        matrix[j - 1][j] - initial[j]
        for j in range(1, t)
        if j < len(matrix[j - 1]) and matrix[j - 1][j] is not None and initial[j] is not None
    ]
    return {
        "matrix": matrix,
        "average_accuracy": float(np.mean(last)),
        "bwt": float(np.mean(bwt)) if bwt else 0.0,
        "fwt": float(np.mean(fwt)) if fwt else None,
    }
