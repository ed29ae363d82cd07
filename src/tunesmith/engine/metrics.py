"""Metrics for classification, streamed over batches; the base-model baseline (linear probe)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

from .batching import inference_batches, iterate, row_lengths

log = logging.getLogger(__name__)

# Metric names, defined once: what tables, reports, the stage table and `runs list` show, per task.
HEADLINE = ("accuracy", "f1_macro", "precision_macro", "recall_macro")  # classification
GENERATION_KEYS = (  # generation (answers scored); the second line only where eval.metrics asks for them
    *("loss", "perplexity", "exact_match", "f1_macro", "rouge_l"),
    *("rouge_1", "rouge_2", "semantic_similarity", "length_ratio", "repetition", "faithfulness"),
    *("style_match", "brand_ngrams"),  # eval.style_reference
    *("preference_accuracy", "pair_loss"),  # method preference, on held-out pairs
)
HELDOUT_KEYS = ("loss", "perplexity")  # domain adaptation (held-out text)
REGRESSION_KEYS = ("spearman", "pearson", "mse", "mae")  # regression
MULTI_LABEL_KEYS = ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss")  # multi-label classification
ENTITY_KEYS = ("f1", "precision", "recall", "token_accuracy")  # token classification (entities)
HEADLINE_ALL = tuple(
    dict.fromkeys(ENTITY_KEYS + MULTI_LABEL_KEYS[:1] + HEADLINE + GENERATION_KEYS + REGRESSION_KEYS + MULTI_LABEL_KEYS)
)


def shown_keys(*metrics: dict) -> list[str]:
    """The headline keys present in the given metric dicts, in the order tables show them."""
    return [k for k in HEADLINE_ALL if any(isinstance(m.get(k), (int, float)) for m in metrics)]


def headline(metrics: dict) -> str:
    """The one figure a listing shows for a run: its task's headline metric, base -> tuned where both exist."""
    tuned = metrics.get("tuned") if isinstance(metrics.get("tuned"), dict) else {}
    base = metrics.get("base") if isinstance(metrics.get("base"), dict) else {}
    for key, _ in HEADLINE_METRIC:
        if isinstance(tuned.get(key), (int, float)):
            before = f"{base[key]:.4f} -> " if isinstance(base.get(key), (int, float)) else ""
            return f"{key} {before}{tuned[key]:.4f}"
    return ""


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str], detail: bool = True) -> dict:
    ids = list(range(len(labels)))
    # Macro averages run over the labels present in the references or the predictions (scikit-learn's
    # default): a label absent from both says nothing about this file and must not count as F1 = 0.
    present = sorted(set(y_true) | set(y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro", zero_division=0)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f),
        "precision_macro": float(p),
        "recall_macro": float(r),
    }
    if detail:
        out["per_class"] = classification_report(
            y_true, y_pred, labels=ids, target_names=labels, output_dict=True, zero_division=0
        )
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return out


def autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def forward_batches(model, rows: list[dict], batch_size: int, pad_id: int, precision: str, fn, **model_kwargs):
    """Run the model over rows in length-sorted batches; `fn(output, batch)` -> array; results in input order.
    `model_kwargs` go to every forward call (output_hidden_states=True)."""
    device = next(model.parameters()).device
    lengths = row_lengths(rows)
    batches = inference_batches(lengths, batch_size, cpu=device.type == "cpu")
    out, order = [], []
    model.eval()
    for idx, batch in zip(batches, iterate(rows, batches, pad_id)):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            out.append(np.asarray(fn(model(**batch, **model_kwargs), batch)))
        order += idx
    result = np.concatenate(out)
    restored = np.empty_like(result)
    restored[np.asarray(order)] = result
    return restored


def predict_proba(model, rows, batch_size, pad_id, precision) -> np.ndarray:
    return forward_batches(
        model, rows, batch_size, pad_id, precision, lambda out, b: out.logits.float().softmax(-1).cpu().numpy()
    )


def evaluate_classifier(model, rows, label_ids, labels, batch_size, pad_id, precision, detail=False) -> dict:
    """Metrics plus mean cross-entropy; only the probabilities of one batch live at a time."""
    probs = predict_proba(model, rows, batch_size, pad_id, precision)
    metrics = classification_metrics(label_ids, probs.argmax(-1).tolist(), labels, detail)
    picked = probs[np.arange(len(label_ids)), label_ids]
    metrics["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return metrics


def mean_pooled(out, batch) -> np.ndarray:
    mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
    return ((out.last_hidden_state * mask).sum(1) / mask.sum(1)).float().cpu().numpy()


PROBE_ROWS = 20_000  # the base line's probe reads at most this many training rows (a forward pass each)


def probe_sample(rows, targets, seed: int) -> tuple[list, list]:
    """All training rows up to PROBE_ROWS, else a seeded sample (with their targets): a base line's probe has long
    stopped moving by then, and a million-row file would cost it a forward pass per row."""
    if len(rows) <= PROBE_ROWS:
        return rows, targets
    picked = np.sort(np.random.default_rng(seed).permutation(len(rows))[:PROBE_ROWS]).tolist()
    log.info(f"base: the probe is fit on {PROBE_ROWS:,} of {len(rows):,} training rows (seeded sample)")
    return [rows[i] for i in picked], [targets[i] for i in picked]


def linear_probe(
    encoder, train_rows, train_ids, eval_rows, eval_ids, labels, batch_size, pad_id, precision, seed
) -> tuple[dict, dict]:
    """The base model as the task's honest baseline: logistic regression on its frozen mean-pooled embeddings.
    Returns its metrics and the probe as numbers (the head format of classification predictors), so the
    base model can answer again later (the dashboard's playground)."""
    x_train = forward_batches(encoder, train_rows, batch_size, pad_id, precision, mean_pooled)
    x_eval = forward_batches(encoder, eval_rows, batch_size, pad_id, precision, mean_pooled)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(x_train, train_ids)
    head = {
        "labels": [labels[i] for i in clf.classes_],
        "coef": clf.coef_.tolist(),
        "intercept": clf.intercept_.tolist(),
        "normalized": False,  # fit on raw mean-pooled embeddings (few-shot heads: L2-normalised)
    }
    return classification_metrics(eval_ids, clf.predict(x_eval).tolist(), labels), head


# The metric that says whether tuning helped, per task, and whether higher is better.
HEADLINE_METRIC = (
    ("f1", True),
    ("f1_micro", True),
    ("f1_macro", True),
    ("exact_match", True),
    ("rouge_l", True),
    ("spearman", True),
    ("perplexity", False),
    ("loss", False),
)


def outcome_warnings(metrics: dict) -> list[str]:
    """What a user must not miss in a finished run: a model that answers every input with one class, or a
    tuned model that ends below the base model on the evaluation set."""
    base, tuned, out = metrics.get("base") or {}, metrics.get("tuned") or {}, []
    matrix = tuned.get("confusion_matrix")
    if matrix:
        predicted = [j for j in range(len(matrix)) if any(row[j] for row in matrix)]
        true = [i for i, row in enumerate(matrix) if any(row)]
        if len(predicted) == 1 and len(true) > 1:
            label = (metrics.get("labels") or [str(predicted[0])] * (predicted[0] + 1))[predicted[0]]
            out.append(
                f"The tuned model predicts '{label}' for every one of the {sum(map(sum, matrix))} evaluation examples "
                "(it collapsed to one class). Try a lower train.lr, more epochs, or method.class_weights: balanced."
            )
    for key, higher in HEADLINE_METRIC:
        if isinstance(base.get(key), (int, float)) and isinstance(tuned.get(key), (int, float)):
            worse = tuned[key] < base[key] if higher else tuned[key] > base[key]
            if worse:
                out.append(
                    f"The tuned model is worse than the base model on the {metrics.get('eval_set', 'evaluation')} set: "
                    f"{key} {tuned[key]:.4f} vs {base[key]:.4f}. Check the data (`tunesmith data check`), the learning "
                    "rate and the number of epochs before using it."
                )
            break
    return out
