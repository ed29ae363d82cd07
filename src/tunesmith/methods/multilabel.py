"""Multi-label classification: a sigmoid output per label trained with binary cross-entropy; the label
thresholds are chosen on the validation set (one global, one per label) and saved with the model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data.multilabel import load_multilabel, multi_hot
from ..engine.loop import Hooks
from ..engine.token_table import token_table
from ..log import reader_warnings
from ..models.registry import default_lr
from ..runs import rundir
from ..runs.auto_length import auto_max_length
from ..tasks import multilabel
from .base import Context, Plan, load_run_model, model_parts, save_base_head, tuning_mode
from .head_init import init_multilabel_head, timed_start
from .supervised import build_model

MULTI = "multi_label_classification"

log = logging.getLogger(__name__)
THRESHOLDS_FILE = "thresholds.json"


class SupervisedMultiLabel:
    def prepare(self, recipe) -> Plan:
        data = load_multilabel(recipe.data, recipe.train.seed)
        reader_warnings(data.warnings, recipe.train.data_check)
        weights, spec, kind, tokenizer = model_parts(recipe)
        recipe, reason = auto_max_length(recipe, tokenizer, data.train.texts, data.train.pairs)
        cfg = recipe.train
        names = ("train", "validation", "evaluation")
        rows = {
            name: token_table(tokenizer, getattr(data, name).texts, getattr(data, name).pairs, cfg.max_length)[0]
            for name in names
        }
        targets = {name: multi_hot(getattr(data, name).labels, data.labels) for name in names}
        lr = cfg.lr or default_lr(spec, kind, tuning_mode(recipe.method, kind))
        return Plan(
            recipe,
            "multi_label",
            tokenizer,
            weights,
            spec,
            kind,
            lr,
            rows["train"],
            targets["train"],
            info={
                "eval_set": data.eval_name,
                "eval_size": len(data.evaluation),
                "labels": data.labels,
                "label_cardinality": round(float(np.mean([len(r) for r in data.train.labels])), 3),
            },
            warnings=data.warnings,
            data=data,
            train_info={"auto": [reason] if reason else [], "train_size": len(data.train)},
            extra={"rows": rows, "targets": {k: np.asarray(v, dtype=np.float32) for k, v in targets.items()}},
        )

    def build(self, plan: Plan, ctx: Context):
        # transformers' pipeline then applies a sigmoid; a previous stage's head is kept only if it was multi-label too
        return build_model(plan.recipe, plan.weights, plan.spec, plan.data.labels, plan.kind, MULTI)

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        base, plan.extra["base_head"] = multilabel.ovr_baseline(
            plan.recipe,
            plan.weights,
            plan.extra["rows"],
            plan.extra["targets"],
            plan.data.labels,
            plan.pad_id,
            ctx.precision,
        )
        return base

    def adapt(self, plan: Plan, ctx: Context, model):
        """The head starts from a probe per label (method.head_init: auto or probe; random keeps it random)."""
        ctx.train_info["head_init_s"] = 0.0
        if plan.recipe.method.head_init == "random" or plan.kind == "decoder":
            return model
        bs, seed, targets = plan.recipe.eval.batch_size, plan.recipe.train.seed, np.asarray(plan.label_ids)
        timed_start(
            ctx,
            lambda: init_multilabel_head(model, plan.rows, targets, bs, plan.pad_id, ctx.precision, seed),
            "head: started from a logistic regression per label on the body's features",
        )
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        def evaluate(
            model,
        ):  # the best epoch by validation loss: F1 at a fixed 0.5 stays 0 until probabilities cross it
            probs = self._probs(plan, ctx, model, "validation")
            y = plan.extra["targets"]["validation"]
            metrics = multilabel.multilabel_metrics(y, probs >= 0.5, plan.data.labels, detail=False)
            return {**metrics, "loss": _bce(probs, y)}

        return Hooks(evaluate=evaluate, compute_loss=_bce_loss, default_metric="loss")

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        thresholds = multilabel.choose_thresholds(
            plan.extra["targets"]["validation"], self._probs(plan, ctx, model, "validation")
        )
        plan.info["thresholds"] = plan.extra["thresholds"] = thresholds
        chosen = self._probs(plan, ctx, model, "evaluation") >= np.asarray(thresholds["per_label"])
        tuned = multilabel.multilabel_metrics(plan.extra["targets"]["evaluation"], chosen, plan.data.labels)
        log.info(
            f"tuned: micro-F1 {tuned['f1_micro']:.4f}, macro-F1 {tuned['f1_macro']:.4f} ({plan.data.eval_name} set, "
            f"thresholds chosen on validation)"
        )
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        save_thresholds(rundir.save_model(ctx.run_dir, model, plan.tokenizer), plan)
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        multilabel.write_report(ctx.run_dir, metrics)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from transformers import AutoModelForSequenceClassification

        model, tokenizer = load_run_model(run_dir, AutoModelForSequenceClassification)
        model_dir = run_dir / rundir.MODEL_DIR
        thresholds = rundir.read_json(model_dir / THRESHOLDS_FILE)
        if len(thresholds.get("per_label") or []) != model.config.num_labels:
            from ..errors import TunesmithError

            raise TunesmithError(
                f"{model_dir / THRESHOLDS_FILE} is {rundir.json_problem(model_dir / THRESHOLDS_FILE) or 'damaged'}: "
                "it must hold one threshold per label. Train the run again, or restore the file."
            )
        return multilabel.MultiLabelPredictor(
            model, tokenizer, thresholds, columns=columns, separator=thresholds.get("separator"), **kwargs
        )

    @staticmethod
    def _probs(plan: Plan, ctx: Context, model, split: str) -> np.ndarray:
        return multilabel.sigmoid_probs(
            model, plan.extra["rows"][split], plan.recipe.eval.batch_size, plan.pad_id, ctx.precision
        )


def save_thresholds(model_dir: Path, plan: Plan) -> None:
    """The label thresholds chosen on validation, beside the model (the predictor applies them)."""
    rundir.write_json(
        model_dir / THRESHOLDS_FILE,
        {"labels": plan.data.labels, **plan.extra["thresholds"], "separator": plan.recipe.data.label_separator},
    )


def _bce_loss(model, batch: dict) -> torch.Tensor:
    """Binary cross-entropy summed over labels, averaged over examples. The plain mean over every (example,
    label) cell divides each logit's gradient by the number of labels: with 28 labels the head barely moved
    in 2 epochs and the model answered the label priors (docs/why-defaults.md)."""
    targets = batch.pop("labels")
    return bce_sum(model(**batch).logits, targets)


def bce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE summed over labels, averaged over examples (see _bce_loss for why not the plain mean)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum") / len(
        targets
    )


def _bce(probs: np.ndarray, y: np.ndarray) -> float:
    """The validation loss in the training loss's units (summed over labels, averaged over examples)."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1).mean())
