"""Continual regression: one number per text (or text pair), carried across experiences like the other task kinds.

The score in the matrix is R² (1 - MSE / variance of the set's targets): higher is better and 1 is perfect, as
the matrix, the forgetting measures and the update gate expect, and it reads in points like accuracy does.
Targets are standardised with the first experience's mean and spread, kept for every later version (a model
that changed its output scale between versions would make old and new scores incomparable); the saved model
speaks the labels' units, as a supervised regression run's does, so serve and predict read it unchanged.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..engine.batching import tokenize
from ..tasks.regression import predict_scores, regression_metrics
from .regression import _fold_targets

TARGET = "value"  # the one output's name (a regression head has no classes to grow)
SCALE_FILE = "target_scale.json"


class Regression:
    name, metric, label_word = "regression", "r2", "target"
    default_metric = "loss"  # the validation MSE in training units picks the kept epoch, as in supervised runs

    def __init__(self):
        self.mean: float | None = None  # the first experience's target mean and spread
        self.std = 1.0

    def load(self, data, seed: int):
        from ..data.regression import load_regression

        loaded = load_regression(data, seed)
        loaded.labels = [TARGET]  # what the learner grows the head by: never more than one output
        if self.mean is None:
            y = np.asarray(loaded.train.labels)
            self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        return loaded

    def start_head(self, learner, rows: list[dict], ids: list) -> None:
        """A score head has no classes to fit a probe for: it starts random."""

    def build(self, recipe, weights: str, spec: dict, labels: list[str], kind: str):
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from ..models.loading import apply_dropout, freeze_bottom

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a new head is expected
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                weights, num_labels=1, problem_type="regression", ignore_mismatched_sizes=True
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        model.config.id2label, model.config.label2id = {0: TARGET}, {TARGET: 0}
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
        apply_dropout(model, recipe.train)
        freeze_bottom(model, recipe.method.freeze_embeddings, recipe.method.freeze_layers)
        return model

    def fitted(self, learner, split):
        """The experience's training split as the model reads it (regression: as it is)."""
        return split

    def examples(self, split) -> list[tuple]:
        """((text, pair), target) with the target's band (in spreads from the mean) as the reservoir's class:
        replay then keeps low, middle and high scores alike."""
        pairs = split.pairs or [None] * len(split.texts)
        return [((text, pair, y), self._band(y)) for text, pair, y in zip(split.texts, pairs, split.labels)]

    def _band(self, y: float) -> str:
        return str(int(np.clip(np.floor((y - self.mean) / self.std), -2, 1)))

    def encode(self, tokenizer, examples: list, labels: list[str], cfg, method) -> tuple[list[dict], list]:
        texts = [text for (text, _, _), _ in examples]
        pairs = [pair for (_, pair, _), _ in examples]
        rows, _ = tokenize(tokenizer, texts, pairs if any(p is not None for p in pairs) else None, cfg.max_length)
        return rows, [(y - self.mean) / self.std for (_, _, y), _ in examples]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights) -> torch.Tensor:
        return torch.nn.functional.mse_loss(logits.float()[:, 0], targets.float())

    def old_outputs(self, model, rows, n_old, batch_size, pad_id, precision) -> torch.Tensor:
        return torch.as_tensor(predict_scores(model, rows, batch_size, pad_id, precision), dtype=torch.float32)[:, None]

    def distill(self, new_logits: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
        """LwF for a number: the new model's outputs on new texts stay near the old model's (no temperature)."""
        return torch.nn.functional.mse_loss(new_logits.float()[:, :1], old.float())

    def predictions(self, model, labels, tokenizer, split, cfg, batch_size, precision) -> list:
        rows, _ = tokenize(tokenizer, split.texts, split.pairs, cfg.max_length)
        scores = predict_scores(model, rows, batch_size, tokenizer.pad_token_id, precision)
        return (scores * self.std + self.mean).tolist()

    def score(self, predicted: list, split) -> float:
        return _r2(split.labels, predicted)

    def score_model(self, learner, model, labels, split) -> float:
        return self.score(self._predicted(learner, model, split), split)

    def validation(self, learner, model, split) -> dict:
        predicted = self._predicted(learner, model, split)
        metrics = regression_metrics(split.labels, predicted)
        return {**metrics, "r2": self.score(predicted, split), "loss": metrics["mse"] / self.std**2}

    def _predicted(self, learner, model, split) -> list:
        cfg, bs = learner.cfg, learner.recipe.eval.batch_size
        return self.predictions(model, learner.labels, learner.tokenizer, split, cfg, bs, learner.precision)

    def overall(self, predicted: list, gold_splits: list, labels: list[str]) -> dict:
        gold = [y for s in gold_splits for y in s.labels]
        return {**regression_metrics(gold, predicted), "r2": _r2(gold, predicted)}

    def relabel(self, learner, examples: list, data) -> list:
        return examples

    def base_line(self, learner, chosen: list, datas, weights: str) -> tuple[dict, dict | None]:
        """The supervised regression run's base line: a ridge regression on the frozen base model's mean-pooled
        embeddings, fitted on `chosen` examples in the labels' units, scored on every evaluation set (with R²)."""
        from ..tasks.regression import ridge_baseline

        evaluation = [pair for d in datas for pair in self.examples(d.evaluation)]
        (train_rows, _), (eval_rows, _) = (
            self.encode(learner.tokenizer, p, [], learner.cfg, None) for p in (chosen, evaluation)
        )
        y_train, y_eval = ([y for (_, _, y), _ in pairs] for pairs in (chosen, evaluation))
        pad = learner.tokenizer.pad_token_id
        base, head = ridge_baseline(
            learner.recipe, weights, train_rows, y_train, eval_rows, y_eval, pad, learner.precision
        )
        if base:  # R² from the same errors, as the matrix reads it
            base["r2"] = _r2_of(base["mse"], y_eval)
        return base, head

    def replayed(self, examples: list, new_labels: list[str]) -> list:
        return examples

    def after_learning(self, learner, validations: list) -> dict:
        return {SCALE_FILE: {"mean": self.mean, "std": self.std}}

    def restore(self, model_dir, model) -> None:
        """A saved version speaks the labels' units: back to the standardised head it trains as."""
        from ..runs import rundir

        scale = rundir.read_json(model_dir / SCALE_FILE)
        self.mean, self.std = float(scale["mean"]), float(scale["std"])
        _fold_targets(model, -self.mean / self.std, 1.0 / self.std)

    @contextlib.contextmanager
    def saved_form(self, model):
        """The model as it is written: the head folded to the labels' units for the write, and back after."""
        _fold_targets(model, self.mean, self.std)
        try:
            yield model
        finally:
            _fold_targets(model, -self.mean / self.std, 1.0 / self.std)

    def predictor(self):
        from .regression import SupervisedRegressor

        return SupervisedRegressor.load_predictor


def _r2(labels, predicted) -> float:
    y, p = np.asarray(labels, dtype=float), np.asarray(predicted, dtype=float)
    return _r2_of(float(((p - y) ** 2).mean()), y)


def _r2_of(mse: float, labels) -> float:
    """1 - MSE / the targets' variance."""
    spread = float(np.var(np.asarray(labels, dtype=float)))
    return 1.0 - mse / spread if spread else float(mse == 0.0)  # one repeated target: right or wrong
