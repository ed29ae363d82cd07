"""Start a new head (classes, labels, a score) from a linear model fitted on its features instead of random numbers
(LP-FT; tag heads: tasks/token_classification.fitted_head).

A random head sends large, arbitrary gradients into the pretrained body for the first steps and, with
few steps and many classes, is still under-trained when training ends: the fine-tuned model can end
below a logistic regression on its own frozen features. Fitting that regression first and copying it
into the head's last linear layer (linear-probe-then-fine-tune, Kumar et al. 2022) starts fine-tuning
at the probe's accuracy and distorts the pretrained features less.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV

from ..engine.metrics import forward_batches
from ..models.loading import fill_head, output_layers

log = logging.getLogger(__name__)

# head_init 'auto' (benchmarks/head_init.py): a random head is under-trained when it has many classes and few optimizer
# steps to learn each one. 35 clauses at ~7 steps per class: the probe start won by a wide margin; 5 classes at
# ~50 steps
# per class: the random head caught up and ended ahead; 2-3 classes: the random head won at every step count measured.
PROBE_FROM_CLASSES = 4
PROBE_BELOW_STEPS_PER_CLASS = 25
# Tag heads (benchmarks/head_init.py --task token_classification): every step trains a tag on many words, so a random
# tag head catches up sooner. Under 15 steps per tag the probe start won on every set and seed (by 5-33 F1 points; a
# random head had tagged nothing after 5 steps per tag); at 18-20 it won on one set and lost on another by 9-10
# points; from 36 on the two were level.
PROBE_BELOW_STEPS_PER_TAG = 15
PROBE_ROWS = 2000  # enough for a good start; the probe's forward pass stays a small fraction of one epoch


def probe_wanted(head_init: str, n_labels: int, n_rows: int, cfg, below: int = PROBE_BELOW_STEPS_PER_CLASS) -> bool:
    """head_init 'probe'/'random' as set; 'auto': probe for 4+ classes (or tags) when the run has fewer than
    `below` optimizer steps per class (`cfg`: the resolved train settings)."""
    if head_init != "auto":
        return head_init == "probe"
    steps = getattr(cfg, "max_steps", None) or math.ceil(n_rows / (cfg.batch_size * cfg.grad_accum)) * cfg.epochs
    return n_labels >= PROBE_FROM_CLASSES and steps / n_labels < below


def head_features(model, layers, rows, batch_size: int, pad_id: int, precision: str) -> np.ndarray | None:
    """What the head's last layer sees for each row, or None when it is not one vector per row
    (decoder heads score every position and pick the last token afterwards)."""
    seen = []
    hooks = [layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0])) for layer in layers]
    try:

        def capture(_out, _batch):
            features = seen.pop()
            seen.clear()
            return features.float().cpu().numpy() if features.ndim == 2 else np.empty((len(_batch["input_ids"]), 0))

        features = forward_batches(model, rows, batch_size, pad_id, precision, capture)
    finally:
        for hook in hooks:
            hook.remove()
    return features if features.shape[1] else None


def _sampled_features(model, layers, rows, batch_size: int, pad_id: int, precision: str, seed: int):
    """(the indices of at most PROBE_ROWS seeded training rows, what the head sees for each: head_features)."""
    picked = np.sort(np.random.default_rng(seed).permutation(len(rows))[:PROBE_ROWS])
    return picked, head_features(model, layers, [rows[i] for i in picked], batch_size, pad_id, precision)


def timed_start(ctx, fit, said: str) -> None:
    """Run one head start (`fit`: fills the head and returns its training score, or None/False when the head
    cannot take it), log `said` formatted with that score, and record its seconds (metrics train.head_init_s)."""
    start = time.perf_counter()
    score = fit()
    if score is not None and score is not False:
        log.info(said.format(score))
    ctx.train_info["head_init_s"] = time.perf_counter() - start


def init_head_from_probe(
    model, rows, label_ids, n_labels: int, batch_size: int, pad_id: int, precision: str, seed: int
) -> float | None:
    """Fit the probe on (at most PROBE_ROWS seeded) training rows and copy it into the head.
    Returns the probe's training accuracy, or None when the head cannot take a probe."""
    layers = output_layers(model, n_labels)
    if not layers:
        return None
    picked, x = _sampled_features(model, layers, rows, batch_size, pad_id, precision, seed)
    y = np.asarray(label_ids)[picked]
    if x is None or len(set(y.tolist())) < n_labels:
        return None  # a class missing from the sample would get no row of weights
    probe = LogisticRegression(max_iter=2000, random_state=seed).fit(x, y)
    weight, bias = _per_class(probe, n_labels)
    fill_head(model, weight, bias)
    model.train()
    return float(probe.score(x, y))


def _per_class(probe, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn stores one row for two classes (the positive one); a softmax head needs a row per class."""
    if n_labels == 2:
        w, b = probe.coef_[0] / 2, probe.intercept_[0] / 2  # softmax over (-z/2, z/2) == sigmoid(z)
        return np.stack([-w, w]), np.array([-b, b])
    return probe.coef_, probe.intercept_


def init_multilabel_head(
    model, rows, targets: np.ndarray, batch_size: int, pad_id: int, precision: str, seed: int
) -> bool:
    """The multi-label head (one sigmoid per label) starts as one logistic regression per label on the features
    it sees. With rare positives, a random head spends the first hundreds of steps learning the label priors and
    a short run ends below the frozen probe (docs/why-defaults.md).
    A label that is always (or never) on in the sample gets a constant: weight 0, bias at its prior."""
    n_labels = targets.shape[1]
    layers = output_layers(model, n_labels)
    if not layers:
        return False
    picked, x = _sampled_features(model, layers, rows, batch_size, pad_id, precision, seed)
    if x is None:
        return False
    y = targets[picked]
    weight, bias = np.zeros((n_labels, x.shape[1])), np.zeros(n_labels)
    for j in range(n_labels):
        if 0 < y[:, j].sum() < len(y):
            probe = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y[:, j])
            weight[j], bias[j] = probe.coef_[0], probe.intercept_[0]
        else:
            prior = np.clip(y[:, j].mean(), 1e-3, 1 - 1e-3)
            bias[j] = np.log(prior / (1 - prior))
    fill_head(model, weight, bias)
    model.train()
    return True


def init_regression_head(
    model, rows, targets: np.ndarray, batch_size: int, pad_id: int, precision: str, seed: int
) -> float | None:
    """The one-output head starts as a ridge regression on the features it sees, fitted to the (standardised)
    targets training uses. Returns the ridge's training R², or None when the head cannot take it."""
    layers = output_layers(model, 1)
    if not layers:
        return None
    picked, x = _sampled_features(model, layers, rows, batch_size, pad_id, precision, seed)
    if x is None:
        return None
    y = np.asarray(targets, dtype=np.float64)[picked]
    ridge = RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0)).fit(x, y)
    fill_head(model, ridge.coef_[None, :], np.array([ridge.intercept_]))
    model.train()
    return float(ridge.score(x, y))
