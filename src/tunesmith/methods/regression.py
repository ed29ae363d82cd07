"""Supervised regression: a pretrained body plus a one-output head trained with mean squared error.

Targets are standardised for training (method.normalize_targets: a loss of order 1 whatever the scale)
and the head is folded back into the labels' units when the model is saved, so the saved model (and
transformers alone) outputs real scores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data.regression import load_regression
from ..engine.loop import Hooks
from ..engine.token_table import token_table
from ..log import reader_warnings
from ..models.loading import apply_dropout, apply_lora, freeze_bottom, output_layers, reset_head, saved_head
from ..models.registry import default_lr
from ..recipe import LoraSection
from ..runs import rundir
from ..runs.auto_length import auto_max_length
from ..tasks import regression
from .base import Context, Plan, load_run_model, model_parts, save_base_head, tuning_mode
from .head_init import init_regression_head, timed_start

log = logging.getLogger(__name__)


class SupervisedRegressor:
    def prepare(self, recipe) -> Plan:
        data = load_regression(recipe.data, recipe.train.seed)
        reader_warnings(data.warnings, recipe.train.data_check)
        weights, spec, kind, tokenizer = model_parts(recipe)
        recipe, reason = auto_max_length(recipe, tokenizer, data.train.texts, data.train.pairs)
        cfg = recipe.train
        rows = {
            name: token_table(tokenizer, getattr(data, name).texts, getattr(data, name).pairs, cfg.max_length)[0]
            for name in ("train", "validation", "evaluation")
        }
        y = np.asarray(data.train.labels)
        mean, std = (float(y.mean()), float(y.std()) or 1.0) if recipe.method.normalize_targets else (0.0, 1.0)
        lr = cfg.lr or default_lr(spec, kind, tuning_mode(recipe.method, kind))
        return Plan(
            recipe,
            "regression",
            tokenizer,
            weights,
            spec,
            kind,
            lr,
            rows["train"],
            [(v - mean) / std for v in y],
            info={"eval_set": data.eval_name, "eval_size": len(data.evaluation)},
            warnings=data.warnings,
            data=data,
            train_info={
                "auto": [reason] if reason else [],
                "train_size": len(data.train),
                "target_mean": mean if recipe.method.normalize_targets else None,
                "target_std": std if recipe.method.normalize_targets else None,
            },
            extra={"rows": rows, "mean": mean, "std": std},
        )

    def build(self, plan: Plan, ctx: Context):
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                plan.weights, num_labels=1, problem_type="regression", ignore_mismatched_sizes=True
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        if saved_head(plan.weights) not in (None, (["LABEL_0"], "regression")):  # a previous stage's classifier head
            reset_head(model)
        model.config.id2label, model.config.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
        apply_dropout(model, plan.recipe.train)
        if any(layer.bias is None for layer in output_layers(model, 1)):  # decoder heads have no bias to hold the mean
            y, std = np.asarray(plan.data.train.labels), plan.extra["std"]
            plan.extra["mean"], plan.label_ids = 0.0, [v / std for v in y]
            plan.train_info["target_mean"] = 0.0 if plan.train_info["target_mean"] is not None else None
        return model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        rows, data = plan.extra["rows"], plan.data
        base, plan.extra["base_head"] = regression.ridge_baseline(
            plan.recipe,
            plan.weights,
            rows["train"],
            data.train.labels,
            rows["evaluation"],
            data.evaluation.labels,
            plan.pad_id,
            ctx.precision,
        )
        return base

    def adapt(self, plan: Plan, ctx: Context, model):
        method = plan.recipe.method
        ctx.train_info["head_init_s"] = 0.0
        kept = saved_head(plan.weights) == (["LABEL_0"], "regression")  # a previous stage's trained score head
        if method.head_init == "probe" and plan.kind != "decoder" and not kept:
            bs, seed, targets = plan.recipe.eval.batch_size, plan.recipe.train.seed, np.asarray(plan.label_ids)
            timed_start(
                ctx,
                lambda: init_regression_head(model, plan.rows, targets, bs, plan.pad_id, ctx.precision, seed),
                "head: started from a ridge regression on the body's features (training R² {:.3f})",
            )
        if tuning_mode(method, plan.kind) == "lora":
            return apply_lora(model, method.lora or LoraSection(), plan.spec)
        freeze_bottom(model, method.freeze_embeddings, method.freeze_layers)
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        def evaluate(model):
            metrics = self._score(plan, ctx, model, "validation")
            return {
                **metrics,
                "loss": metrics["mse"] / plan.extra["std"] ** 2,
            }  # the training loss's units: picks the best epoch

        return Hooks(evaluate=evaluate, compute_loss=_mse, default_metric="loss")

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        tuned = self._score(plan, ctx, model, "evaluation")
        log.info(
            f"tuned: Spearman {tuned['spearman']:.4f}, Pearson {tuned['pearson']:.4f}, MSE {tuned['mse']:.4f} "
            f"({plan.data.eval_name} set)"
        )
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        _fold_targets(model, plan.extra["mean"], plan.extra["std"])
        rundir.save_model(ctx.run_dir, model, plan.tokenizer)
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        regression.write_report(ctx.run_dir, metrics, plan.data.evaluation.labels, plan.extra["predicted"])

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from transformers import AutoModelForSequenceClassification

        model, tokenizer = load_run_model(run_dir, AutoModelForSequenceClassification)
        return regression.RegressorPredictor(model, tokenizer, columns=columns, **kwargs)

    @staticmethod
    def _score(plan: Plan, ctx: Context, model, split: str) -> dict:
        scores = regression.predict_scores(
            model, plan.extra["rows"][split], plan.recipe.eval.batch_size, plan.pad_id, ctx.precision
        )
        predicted = scores * plan.extra["std"] + plan.extra["mean"]
        if split == "evaluation":
            plan.extra["predicted"] = predicted.tolist()
        return regression.regression_metrics(getattr(plan.data, split).labels, predicted)


def _mse(model, batch: dict) -> torch.Tensor:
    targets = batch.pop("labels").float()
    return torch.nn.functional.mse_loss(model(**batch).logits.float()[:, 0], targets)


@torch.no_grad()
def _fold_targets(model, mean: float, std: float) -> None:
    """y = std * head(x) + mean, written into the head's last layer: the saved model speaks the labels' units."""
    layers = output_layers(model, 1)
    if not layers:
        raise RuntimeError("no one-output head found to fold the target scale into")
    layers[-1].weight.mul_(std)
    if layers[-1].bias is not None:
        layers[-1].bias.mul_(std).add_(mean)
