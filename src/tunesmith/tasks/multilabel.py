"""What multi-label methods share: metrics (micro/macro F1, subset accuracy, Hamming loss, per label),
thresholds chosen on validation, the one-vs-rest base line, the report, and the predictor."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..data.inputs import one_or_many
from ..engine.batching import tokenize
from ..engine.hardware import resolve_precision
from ..engine.metrics import forward_batches, mean_pooled, probe_sample
from ..models.loading import load_encoder
from .classification import base_parts, head_proba

log = logging.getLogger(__name__)
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
KEYS = ("f1_micro", "f1_macro", "precision_micro", "recall_micro", "subset_accuracy", "hamming_loss")


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], detail: bool = True) -> dict:
    from sklearn.metrics import hamming_loss, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    out = {
        "subset_accuracy": float((y_true == y_pred).all(1).mean()),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
    }
    present = [j for j in range(len(labels)) if y_true[:, j].any() or y_pred[:, j].any()]  # macro over labels in play
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    if detail:
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
        out["per_label"] = {
            label: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
            for j, label in enumerate(labels)
        }
    return out


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """One global threshold (best micro-F1 on validation) and one per label (best F1 of that label; the global
    one where validation holds no example of it)."""
    from sklearn.metrics import f1_score

    best = max(GRID, key=lambda t: f1_score(y_true, probs >= t, average="micro", zero_division=0))
    per_label = [
        float(max(GRID, key=lambda t: f1_score(y_true[:, j], probs[:, j] >= t, zero_division=0)))
        if y_true[:, j].any()
        else float(best)
        for j in range(y_true.shape[1])
    ]
    return {"global": float(best), "per_label": per_label}


def sigmoid_probs(model, rows, batch_size: int, pad_id: int, precision: str) -> np.ndarray:
    return forward_batches(
        model, rows, batch_size, pad_id, precision, lambda out, b: out.logits.float().sigmoid().cpu().numpy()
    )


def ovr_baseline(
    recipe, weights: str, rows: dict, targets: dict, labels: list[str], pad_id: int, precision: str
) -> tuple[dict, dict | None]:
    """One-vs-rest logistic regression on the frozen base model's mean-pooled embeddings; its thresholds are
    chosen on validation as the tuned model's are. Returns the metrics and the regressions with their thresholds
    as numbers (saved as base_head.json, so the base model can answer again)."""
    if recipe.eval.baseline == "none":
        return {}, None
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    encoder, bs = load_encoder(weights), recipe.eval.batch_size
    rows, targets = dict(rows), dict(targets)
    rows["train"], targets["train"] = probe_sample(rows["train"], list(targets["train"]), recipe.train.seed)
    x = {
        name: forward_batches(encoder, rows[name], bs, pad_id, precision, mean_pooled)
        for name in ("train", "validation", "evaluation")
    }
    y_train = np.asarray(targets["train"])
    keep = y_train.any(0) & ~y_train.all(0)  # a label on every row (or none) has one class: predict it constantly
    # a label without both classes answers its training frequency: zero weights, that frequency's log-odds as bias
    share = np.clip(y_train.mean(0), 1e-6, 1 - 1e-6)
    coef, intercept = np.zeros((len(labels), x["train"].shape[1])), np.log(share / (1 - share))
    if keep.any():
        clf = OneVsRestClassifier(LogisticRegression(max_iter=2000, random_state=recipe.train.seed)).fit(
            x["train"], y_train[:, keep]
        )
        coef[keep] = np.concatenate([e.coef_ for e in clf.estimators_])
        intercept[keep] = np.concatenate([e.intercept_ for e in clf.estimators_])
    probs = {name: 1 / (1 + np.exp(-(x[name] @ coef.T + intercept))) for name in ("validation", "evaluation")}
    thresholds = choose_thresholds(np.asarray(targets["validation"]), probs["validation"])
    base = multilabel_metrics(
        np.asarray(targets["evaluation"]), probs["evaluation"] >= np.asarray(thresholds["per_label"]), labels
    )
    log.info(f"base: micro-F1 {base['f1_micro']:.4f}, macro-F1 {base['f1_macro']:.4f}")
    head = {
        "labels": labels,
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
        "normalized": False,
        "multi_label": True,
        "thresholds": thresholds,
        # a continual recipe's keys live in its experiences (each holds the shared data keys)
        "separator": (recipe.data or recipe.experiences[0].data).label_separator,
    }
    return {"kind": "one-vs-rest logistic regression on the frozen base model's mean-pooled embeddings", **base}, head


def load_base_predictor(run_dir: Path, columns: dict | None = None, max_length: int = 256):
    """The base model with the regressions (and thresholds) the run scored it by: the pre-trained body and
    base_head.json. None for a run that kept none (eval.baseline: none)."""
    parts = base_parts(run_dir, "labels")
    if parts is None:
        return None
    encoder, tokenizer, head = parts
    thresholds = head.get("thresholds") if isinstance(head.get("thresholds"), dict) else {}
    return MultiLabelPredictor(
        encoder,
        tokenizer,
        thresholds,
        max_length=max_length,
        columns=columns,
        separator=head.get("separator"),
        head=head,
    )


def write_report(run_dir: Path, metrics: dict) -> None:
    from ..runs.report import loss_plot, read_log, warnings_section

    (run_dir / "plots").mkdir(exist_ok=True)
    loss_plot(read_log(run_dir), run_dir / "plots" / "loss.png", metric="f1_micro")
    base, tuned, t = metrics["base"], metrics["tuned"], metrics["train"]
    rows = "\n".join(
        f"| {k} | {base[k]:.4f} | {tuned[k]:.4f} | {tuned[k] - base[k]:+.4f} |"
        if k in base
        else f"| {k} | n/a | {tuned[k]:.4f} | n/a |"
        for k in KEYS
    )
    per = "\n".join(
        f"| {label} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} | {th:.2f} |"
        for (label, v), th in zip(tuned["per_label"].items(), metrics["thresholds"]["per_label"])
    )
    (run_dir / "report.md").write_text(
        f"""# tunesmith run report

Model `{metrics["model"]}`, multi-label classification ({len(metrics["labels"])} labels); evaluated on the
{metrics["eval_set"]}
set ({metrics["eval_size"]} examples) with per-label thresholds chosen on validation (global
{metrics["thresholds"]["global"]:.2f}).
Base = {base.get("kind", "none")}.
{warnings_section(metrics)}
## Base vs tuned

| metric | base | tuned | change |
|---|---|---|---|
{rows}

## Per label (tuned)

| label | precision | recall | F1 | support | threshold |
|---|---|---|---|---|---|
{per}

## Training

{t["epochs"]} epoch(s), best epoch {t["best_epoch"]}, {t["runtime_s"]:.1f} s, {t["samples_per_s"]:.1f}
samples/s, lr {t["lr"]}.

![loss](plots/loss.png)
""",
        encoding="utf-8",
    )


class MultiLabelPredictor:
    """A finished multi-label run: `predict` -> a label set per text, `predict_proba` -> one probability per
    label (columns in `classes_` order), `evaluate(file)`. `threshold` overrides the per-label thresholds.

    `head`: few-shot runs keep an embedding body and one logistic regression per label saved as numbers."""

    def __init__(
        self,
        model,
        tokenizer,
        thresholds: dict,
        max_length: int = 256,
        batch_size: int = 64,
        precision: str = "auto",
        columns: dict | None = None,
        separator: str | None = None,
        head: dict | None = None,
    ):
        self.model, self.tokenizer, self.head = model.eval(), tokenizer, head
        self.classes_ = head["labels"] if head else [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.thresholds = checked_thresholds(thresholds, len(self.classes_))
        self.max_length, self.batch_size, self.precision = max_length, batch_size, resolve_precision(precision)
        self.columns = columns or {"text": "text", "label": "label", "pair": None}
        self.separator = separator if isinstance(separator, str) and separator else "|"

    @one_or_many
    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.classes_)))
        rows, _ = tokenize(self.tokenizer, list(texts), pairs, self.max_length)
        if self.head:
            x = forward_batches(
                self.model, rows, self.batch_size, self.tokenizer.pad_token_id, self.precision, mean_pooled
            )
            return head_proba(self.head, x)
        return sigmoid_probs(self.model, rows, self.batch_size, self.tokenizer.pad_token_id, self.precision)

    @one_or_many
    def predict(
        self, texts: list[str], pairs: list[str] | None = None, threshold: float | None = None
    ) -> list[list[str]]:
        cut = np.asarray(self.thresholds["per_label"]) if threshold is None else threshold
        return [
            [label for label, on in zip(self.classes_, row) if on] for row in self.predict_proba(texts, pairs) >= cut
        ]

    def annotate(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, list]:
        probs = self.predict_proba(texts, pairs)
        chosen = probs >= np.asarray(self.thresholds["per_label"])
        return {
            "predicted_labels": [
                self.separator.join(label for label, on in zip(self.classes_, row) if on) for row in chosen
            ],
            "probabilities": [
                json.dumps({label: round(float(p), 4) for label, p in zip(self.classes_, row)}) for row in probs
            ],
        }

    def evaluate(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> dict:
        from types import SimpleNamespace

        from ..data.multilabel import multi_hot, read_multilabel
        from ..errors import TunesmithError

        spec = SimpleNamespace(
            filter=None,
            text_column=text_column or self.columns["text"],
            text_pair_column=self.columns["pair"],
            label_column=label_column or self.columns["label"],
            label_separator=self.separator,
        )
        split = read_multilabel(str(path), spec, "--data")
        unknown = sorted({label for row in split.labels for label in row} - set(self.classes_))
        if unknown:
            raise TunesmithError(f"{path}: label(s) {unknown[:10]} are not among the model's labels {self.classes_}.")
        chosen = self.predict_proba(split.texts, split.pairs) >= np.asarray(self.thresholds["per_label"])
        return multilabel_metrics(np.asarray(multi_hot(split.labels, self.classes_)), chosen, self.classes_)


def checked_thresholds(thresholds, labels: int) -> dict:
    """A run's saved thresholds.json, or a clear error: one number from 0 to 1 per label (the file may be edited)."""
    from ..errors import TunesmithError

    cuts = thresholds.get("per_label") if isinstance(thresholds, dict) else None
    numbers = isinstance(cuts, list) and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in cuts
    )
    if not numbers or len(cuts) != labels:
        raise TunesmithError(
            f"The run's model/thresholds.json is damaged: it must hold per_label, one threshold from 0 to 1 for "
            f"each of the {labels} labels. Train the run again, or restore the file."
        )
    return thresholds
