"""Supervised classification: a pretrained body plus a new head, full fine-tuning or LoRA."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch

from ..engine.loop import Hooks
from ..engine.metrics import evaluate_classifier
from ..models.loading import SINGLE, apply_dropout, apply_lora, freeze_bottom, head_is_fresh, load_classifier
from ..models.registry import default_lr
from ..recipe import LoraSection
from ..runs import rundir
from ..runs.report import write_report
from ..tasks import classification
from .base import Context, Plan, load_run_model, save_base_head, tuning_mode
from .head_init import init_head_from_probe, probe_wanted, timed_start

log = logging.getLogger(__name__)


class SupervisedClassifier:
    """text (or text pair) -> one label: cross-entropy on a classification head, optionally class-weighted."""

    def prepare(self, recipe) -> Plan:
        p = classification.prepare(recipe)
        recipe, data, enc, kind = p["recipe"], p["data"], p["enc"], p["kind"]
        lr = recipe.train.lr or default_lr(p["spec"], kind, tuning_mode(recipe.method, kind))
        return Plan(
            recipe,
            "classification",
            p["tokenizer"],
            p["weights"],
            p["spec"],
            kind,
            lr,
            enc["train"],
            enc["train_ids"],
            info=classification.info(data),
            warnings=data.warnings,
            data=data,
            extra={"enc": enc},
            train_info={"train_size": len(data.train), "truncated": len(enc["truncated"]), "auto": p["auto"]},
        )

    def build(self, plan: Plan, ctx: Context):
        return build_model(plan.recipe, plan.weights, plan.spec, plan.data.labels, plan.kind)

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        base, plan.extra["base_head"] = classification.probe_baseline(
            plan.recipe, plan.weights, plan.extra["enc"], plan.data, plan.pad_id, ctx.precision
        )
        return base

    def adapt(self, plan: Plan, ctx: Context, model):
        """LP-FT: a new encoder head starts from a probe on the body's features (see head_init); a head carried
        over from a previous stage with the same labels is already trained and is kept; decoder heads score
        every position, so no probe fits them."""
        method, labels = plan.recipe.method, plan.data.labels
        wanted = probe_wanted(method.head_init, len(labels), len(plan.rows), plan.loop_cfg or plan.recipe.train)
        ctx.train_info["head_init_s"] = 0.0
        if not wanted or plan.kind == "decoder" or not head_is_fresh(plan.weights, labels):
            return model
        enc, bs, seed = plan.extra["enc"], plan.recipe.eval.batch_size, plan.recipe.train.seed
        timed_start(
            ctx,
            lambda: init_head_from_probe(
                model, enc["train"], enc["train_ids"], len(labels), bs, plan.pad_id, ctx.precision, seed
            ),
            "head: started from a linear probe on the body's features (training accuracy {:.4f})",
        )
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        enc, recipe = plan.extra["enc"], plan.recipe
        evaluate = lambda m: evaluate_classifier(  # noqa: E731
            m,
            enc["validation"],
            enc["validation_ids"],
            plan.data.labels,
            recipe.eval.batch_size,
            plan.pad_id,
            ctx.precision,
        )
        return make_hooks(recipe, plan.data.labels, plan.data.train.labels, evaluate, len(enc["validation"]))

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        enc = plan.extra["enc"]
        tuned = evaluate_classifier(
            model,
            enc["evaluation"],
            enc["evaluation_ids"],
            plan.data.labels,
            plan.recipe.eval.batch_size,
            plan.pad_id,
            ctx.precision,
            detail=True,
        )
        classification.announce(tuned, plan.data.eval_name)
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        rundir.save_model(ctx.run_dir, model, plan.tokenizer)
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        write_report(ctx.run_dir, metrics, plan.data.labels)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from transformers import AutoModelForSequenceClassification

        model, tokenizer = load_run_model(
            run_dir, AutoModelForSequenceClassification
        )  # safetensors only: a .bin is not ours
        return classification.ClassifierPredictor(model, tokenizer, columns=columns, **kwargs)


def build_model(recipe, weights: str, spec: dict, labels: list[str], kind: str, problem_type: str = SINGLE):
    model = load_classifier(weights, labels, problem_type)
    apply_dropout(model, recipe.train)
    if tuning_mode(recipe.method, kind) == "lora":
        return apply_lora(model, recipe.method.lora or LoraSection(), spec)
    freeze_bottom(model, recipe.method.freeze_embeddings, recipe.method.freeze_layers)
    return model


def class_weight_tensor(setting, labels: list[str], train_labels: list[str]) -> torch.Tensor | None:
    """'balanced' = n / (k * count_c), as in scikit-learn; a dict gives weights by label name."""
    if setting == "none":
        return None
    if setting == "balanced":
        counts = Counter(train_labels)
        n, k = len(train_labels), len(labels)
        return torch.tensor([n / (k * counts[label]) for label in labels], dtype=torch.float32)
    unknown = set(setting) - set(labels)
    if unknown:
        from ..errors import TunesmithError

        raise TunesmithError(
            f"method.class_weights names label(s) not in the training data: {sorted(unknown)}. Labels: {labels}."
        )
    return torch.tensor([float(setting.get(label, 1.0)) for label in labels], dtype=torch.float32)


def make_hooks(recipe, labels: list[str], train_labels: list[str], evaluate, validation_rows: int = 0) -> Hooks:
    weights = class_weight_tensor(recipe.method.class_weights, labels, train_labels)
    if weights is None:
        return Hooks(evaluate=evaluate, validation_rows=validation_rows)

    def weighted_loss(model, batch):
        targets = batch.pop("labels")
        logits = model(**batch).logits.float()
        return torch.nn.functional.cross_entropy(logits, targets, weight=weights.to(logits.device))

    return Hooks(evaluate=evaluate, compute_loss=weighted_loss, validation_rows=validation_rows)
