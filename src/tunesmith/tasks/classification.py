"""What every classification method shares: data read and encoded once, the linear-probe base line,
and the predictor a finished run hands out (scikit-learn shaped: classes_, predict, predict_proba)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.classification import load_classification, read_split
from ..data.inputs import one_or_many
from ..engine.batching import tokenize, unknown_only
from ..engine.hardware import resolve_precision
from ..engine.metrics import (
    classification_metrics,
    forward_batches,
    linear_probe,
    mean_pooled,
    predict_proba,
    probe_sample,
)
from ..engine.token_table import token_table
from ..errors import TunesmithError
from ..log import reader_warnings
from ..models.loading import load_encoder, load_tokenizer, model_kind, model_spec, resolve_weights
from ..runs import rundir
from ..runs.auto_length import auto_max_length

log = logging.getLogger(__name__)


def prepare(recipe) -> dict:
    """The recipe's data read, checked and encoded, with the model's weights, registry entry and kind; "recipe":
    the recipe with train.max_length chosen from the data when it was unset ("auto": why)."""
    data = load_classification(recipe.data, recipe.train.seed)
    reader_warnings(data.warnings, recipe.train.data_check)
    weights, spec = resolve_weights(recipe.model.name), model_spec(recipe.model.name)
    tokenizer = load_tokenizer(weights)
    recipe, reason = auto_max_length(recipe, tokenizer, data.train.texts, data.train.pairs)
    return {
        "data": data,
        "weights": weights,
        "spec": spec,
        "kind": model_kind(weights, spec),
        "tokenizer": tokenizer,
        "enc": encode(data, tokenizer, recipe.train.max_length),
        "recipe": recipe,
        "auto": [reason] if reason else [],
    }


def encode(data, tokenizer, max_length: int) -> dict:
    """Tokenize every split once; labels to ids; report truncation instead of cutting silently."""
    label_index = {label: i for i, label in enumerate(data.labels)}
    enc = {}
    for name in ("train", "validation", "evaluation"):
        split = getattr(data, name)
        enc[name], cut = token_table(tokenizer, split.texts, split.pairs, max_length)  # memory-mapped, cached
        enc[f"{name}_ids"] = [label_index[label] for label in split.labels]
        if name == "train":
            enc["truncated"] = cut
        unknown = unknown_only(tokenizer, enc[name])
        if unknown:
            log.warning(
                f"{unknown} of {len(split)} {name} text(s) hold no token the model's vocabulary "
                "knows (every piece is the unknown token, e.g. emoji or a script the tokenizer lacks); the model "
                "sees them all as the same input."
            )
    if enc["truncated"]:
        cut = enc["truncated"]
        log.warning(
            f"{len(cut)} of {len(data.train)} training texts exceed train.max_length={max_length} "
            f"tokens and were truncated (longest {max(cut)} tokens). Raise train.max_length to keep more."
        )
    return enc


def info(data) -> dict:
    """The top-level metrics.json keys every classification run has."""
    return {"eval_set": data.eval_name, "eval_size": len(data.evaluation), "labels": data.labels}


def load_base_predictor(run_dir: Path, columns: dict | None = None, max_length: int = 256):
    """The base model with the probe the run scored it by: the pre-trained body and base_head.json. None for a
    run that kept no probe (eval.baseline: none, or a method without one)."""
    parts = base_parts(run_dir)
    if parts is None:
        return None
    encoder, tokenizer, head = parts
    return ClassifierPredictor(encoder, tokenizer, max_length=max_length, head=head, columns=columns)


def base_parts(run_dir: Path, outputs: str = "classes"):
    """(the pre-trained body, its tokenizer, the base line's head from base_head.json, checked against the body)
    for a run that kept one; None otherwise. `outputs`: as read_head's."""
    path = run_dir / rundir.BASE_HEAD_FILE
    if not path.is_file():
        return None
    weights = resolve_weights(rundir.read_yaml(run_dir / rundir.RECIPE_FILE)["model"]["name"])
    encoder = load_encoder(weights)
    return encoder, load_tokenizer(weights), read_head(path, encoder.config.hidden_size, outputs)


def read_head(path: Path, width: int, outputs: str = "classes") -> dict:
    """A linear head saved as numbers (a base line's probe, a few-shot head), read as input from anyone: finite
    numbers shaped for a body of `width` features and the head's labels, or an error that names the file (a
    wrong shape would otherwise broadcast, or fail deep in numpy on the first request).

    outputs: 'classes' (one row of weights, or one for two classes), 'labels' (a row per label: multi-label),
    'value' (one row: regression)."""
    head = rundir.read_json(path)
    try:
        labels = head.get("labels", ["value"] if outputs == "value" else None)
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ValueError("its labels are not a list of names")
        if outputs == "classes" and len(labels) < 2:
            raise ValueError("a classifier needs two labels or more")
        rows = 1 if outputs == "value" or (outputs == "classes" and len(labels) == 2) else len(labels)
        coef, intercept = np.asarray(head["coef"], dtype=np.float64), np.asarray(head["intercept"], dtype=np.float64)
        if coef.shape != (rows, width) or intercept.shape != (rows,):
            raise ValueError(f"weights {coef.shape} and biases {intercept.shape} where ({rows}, {width}) were needed")
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            raise ValueError("it holds numbers that are not finite")
    except (KeyError, TypeError, ValueError) as error:
        problem = rundir.json_problem(path) or f"not a head for this run's model ({error})"
        raise TunesmithError(f"{path} is {problem}; train the run again, or restore the file from a copy.") from None
    return {**head, "labels": labels, "coef": coef, "intercept": intercept}


def probe_baseline(recipe, weights: str, enc: dict, data, pad_id: int, precision: str) -> tuple[dict, dict | None]:
    """The base model as the task's honest baseline: logistic regression on its frozen mean-pooled embeddings.
    Returns the metrics and the probe (saved as base_head.json, so the base model can answer again)."""
    if recipe.eval.baseline == "none":
        return {}, None
    rows, ids = probe_sample(enc["train"], enc["train_ids"], recipe.train.seed)
    base, head = linear_probe(
        load_encoder(weights),
        rows,
        ids,
        enc["evaluation"],
        enc["evaluation_ids"],
        data.labels,
        recipe.eval.batch_size,
        pad_id,
        precision,
        recipe.train.seed,
    )
    log.info(f"base: accuracy {base['accuracy']:.4f}, macro-F1 {base['f1_macro']:.4f}")
    return {"kind": "linear probe on the frozen base model's mean-pooled embeddings", **base}, head


def announce(tuned: dict, eval_name: str) -> None:
    log.info(f"tuned: accuracy {tuned['accuracy']:.4f}, macro-F1 {tuned['f1_macro']:.4f} ({eval_name} set)")


class ClassifierPredictor:
    """A finished classification run: `classes_`, `predict`, `predict_proba` (your label names), `evaluate`.

    `head`: few-shot runs keep an embedding body and a logistic head saved as numbers (`head_proba`)."""

    def __init__(
        self,
        model,
        tokenizer,
        max_length: int = 256,
        batch_size: int = 64,
        precision: str = "auto",
        head: dict | None = None,
        columns: dict | None = None,
    ):
        self.model, self.tokenizer, self.head = model.eval(), tokenizer, head
        self.classes_ = head["labels"] if head else [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length, self.batch_size = max_length, batch_size
        self.precision = resolve_precision(precision)
        self.columns = columns or {"text": "text", "label": "label", "pair": None}

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
        return predict_proba(self.model, rows, self.batch_size, self.tokenizer.pad_token_id, self.precision)

    def proba_and_embedding(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and each text's L2-normalised mean-pooled last hidden state, from one forward pass
        (serve's drift signal compares the embedding with where the training texts lie)."""
        rows, _ = tokenize(self.tokenizer, list(texts), None, self.max_length)
        pad = self.tokenizer.pad_token_id
        if self.head:
            x = forward_batches(self.model, rows, self.batch_size, pad, self.precision, mean_pooled)
            return head_proba(self.head, x), _unit(x)
        width = len(self.classes_)

        def both(out, batch):
            mask = batch["attention_mask"].unsqueeze(-1).to(out.hidden_states[-1].dtype)
            pooled = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1)
            return np.concatenate([out.logits.float().softmax(-1).cpu().numpy(), pooled.float().cpu().numpy()], axis=1)

        joined = forward_batches(
            self.model, rows, self.batch_size, pad, self.precision, both, output_hidden_states=True
        )
        return joined[:, :width], _unit(joined[:, width:])

    @one_or_many
    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(texts, pairs).argmax(-1)]

    def annotate(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, list]:
        """The columns `tunesmith predict` adds to a file."""
        probs = self.predict_proba(texts, pairs)
        return {
            "predicted_label": [self.classes_[i] for i in probs.argmax(-1)],
            "probability": probs.max(-1).astype(np.float64).round(6).tolist(),  # float32 would print 0.9123450160026550
        }

    def evaluate(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> dict:
        """Accuracy, macro F1/precision/recall, per class and the confusion matrix on a labeled file."""
        split = read_split(
            str(path),
            text_column or self.columns["text"],
            label_column or self.columns["label"],
            self.columns["pair"],
            "--data",
            options={"text_column": "--text-column", "label_column": "--label-column"},
        )
        unknown = sorted(set(split.labels) - set(self.classes_))
        if unknown:
            raise TunesmithError(f"{path}: label(s) {unknown[:10]} are not among the model's labels {self.classes_}.")
        index = {label: i for i, label in enumerate(self.classes_)}
        probs = self.predict_proba(split.texts, split.pairs)
        return classification_metrics([index[y] for y in split.labels], probs.argmax(-1).tolist(), self.classes_)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def head_proba(head: dict, x: np.ndarray) -> np.ndarray:
    """Logistic-regression probabilities from the saved numbers (binary heads have one row of weights; multi-label
    heads one row per label, each read through its own sigmoid)."""
    coef, intercept = np.asarray(head["coef"]), np.asarray(head["intercept"])
    if head.get("normalized", True):  # few-shot heads were fit on L2-normalised embeddings
        x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    scores = x @ coef.T + intercept
    if head.get("multi_label"):  # one independent logistic regression per label
        return 1 / (1 + np.exp(-scores))
    if coef.shape[0] == 1:
        p = 1 / (1 + np.exp(-scores[:, 0]))
        return np.stack([1 - p, p], axis=1)
    scores = np.exp(scores - scores.max(1, keepdims=True))
    return scores / scores.sum(1, keepdims=True)
