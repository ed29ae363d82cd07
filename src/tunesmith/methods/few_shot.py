"""few_shot for encoders: K examples per class -> pairs -> contrastive body -> logistic head (the SetFit recipe).

Base = the same logistic head on the untouched body's embeddings of the same K examples, so the
comparison isolates what the contrastive step adds. Decoders take the prompt-based route instead
(few_shot_prompted.py); the registry picks by model kind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..engine.metrics import classification_metrics, forward_batches, mean_pooled
from ..models.loading import apply_dropout, load_encoder
from ..runs import rundir
from ..runs.report import write_report
from ..tasks import classification
from .base import Context, Plan, save_base_head, with_train_defaults
from .pairs import fit_head, make_hooks, make_pairs, normalize, pair_rows

log = logging.getLogger(__name__)
HEAD_FILE = "head.json"
# Twice SetFit's 2e-5: one short epoch of pairs (40 steps for 4 classes x 8) moves the body too little at
# 2e-5; chosen on three sets and confirmed on two others (docs/why-defaults.md).
BODY_LR = 4e-5
GUARD_PER_CLASS = 5


class FewShotContrastive:
    train_defaults = {"epochs": 1, "batch_size": 16}  # one pass over the pairs, 16 per step, as SetFit: more overfits K

    def prepare(self, recipe) -> Plan:
        recipe = with_train_defaults(recipe, self)
        p = classification.prepare(recipe)
        recipe, data, enc = p["recipe"], p["data"], p["enc"]
        cfg = recipe.train
        pairs = make_pairs(data.train.labels, recipe.method.pairs_per_example * len(data.train), cfg.seed)
        log.info(f"few-shot: {len(data.train)} examples -> {len(pairs)} pairs (half same-class)")
        rows, targets = pair_rows(enc["train"], pairs)
        return Plan(
            recipe,
            "classification",
            p["tokenizer"],
            p["weights"],
            p["spec"],
            p["kind"],
            cfg.lr or BODY_LR,
            rows,
            targets,
            info=classification.info(data),
            warnings=data.warnings,
            data=data,
            extra={"enc": enc, "heads": {}},
            train_info={"train_size": len(data.train), "pairs": len(pairs), "auto": p["auto"]},
        )

    def build(self, plan: Plan, ctx: Context):
        model = load_encoder(plan.weights)
        apply_dropout(model, plan.recipe.train)  # train.dropout / attention_dropout hold for every method
        return model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        if guarded(plan):  # the untuned body's validation score: the bar the tuned body must clear to be kept
            plan.extra["base_validation"] = _head_metrics(plan, ctx, model, "validation", detail=False)[0]
        if plan.recipe.eval.baseline == "none":
            return {}
        base, head = _head_metrics(plan, ctx, model, "evaluation", detail=False)
        plan.extra["base_head"] = head_numbers(head, plan.data.labels)
        log.info(f"base: accuracy {base['accuracy']:.4f}, macro-F1 {base['f1_macro']:.4f}")
        return {
            "kind": f"logistic-regression head on the untuned body's embeddings of the same "
            f"{len(plan.data.train)} examples",
            **base,
        }

    def adapt(self, plan: Plan, ctx: Context, model):
        return model

    def hooks(self, plan: Plan, ctx: Context):
        heads = plan.extra[
            "heads"
        ]  # epoch -> (validation metrics, head): when validation is also the evaluation set, reuse the best

        def evaluate(model):
            metrics, head = _head_metrics(plan, ctx, model, "validation")
            heads[len(heads) + 1] = (metrics, head)
            return {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")}

        return make_hooks(evaluate)

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        if keep_base_body(plan, ctx, result):
            plan.extra["body"] = model = load_encoder(plan.weights).to(next(model.parameters()).device)
            tuned, head = _head_metrics(plan, ctx, model, "evaluation", detail=True)
        elif plan.data.eval_name == "validation":
            tuned, head = plan.extra["heads"][result.best_epoch]
        else:
            tuned, head = _head_metrics(plan, ctx, model, "evaluation", detail=True)
        plan.extra["head"] = head
        classification.announce(tuned, plan.data.eval_name)
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        """The body in plain Hugging Face format (AutoModel), the head as JSON numbers (no pickle)."""
        target, head, labels = ctx.run_dir / rundir.MODEL_DIR, plan.extra["head"], plan.data.labels
        plan.extra.get("body", model).save_pretrained(target)
        plan.tokenizer.save_pretrained(target)
        rundir.write_json(target / "labels.json", {"labels": labels})
        rundir.write_json(target / HEAD_FILE, head_numbers(head, labels))
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        write_report(ctx.run_dir, metrics, plan.data.labels)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from ..models.loading import load_tokenizer

        model_dir = run_dir / rundir.MODEL_DIR
        body = rundir.load_saved_model(model_dir, load_encoder)
        head = load_head(model_dir, body.config.hidden_size)
        tokenizer = rundir.load_saved_model(model_dir, load_tokenizer)
        return classification.ClassifierPredictor(body, tokenizer, head=head, columns=columns, **kwargs)


def guarded(plan: Plan) -> bool:
    """A validation file of its own with 5+ examples per class (on a few carved out of K it would be noise)."""
    return bool(plan.recipe.data.validation) and len(plan.data.validation) >= GUARD_PER_CLASS * len(plan.data.labels)


def keep_base_body(plan: Plan, ctx: Context, result) -> bool:
    """True when contrastive training left the body worse on validation than it started (the head refitted on the
    K examples either way): at 8 examples per class one unlucky draw of pairs can pull the classes together."""
    base = plan.extra.get("base_validation")
    metric = plan.recipe.train.early_stopping.metric or "f1_macro"
    sign = -1 if metric == "loss" else 1  # lower is better for the loss
    if base is None or metric not in result.best_metrics or sign * base[metric] <= sign * result.best_metrics[metric]:
        ctx.train_info["kept_base_body"] = False
        return False
    log.info(
        f"few-shot: contrastive training lowered validation {metric} from {base[metric]:.4f} to "
        f"{result.best_metrics[metric]:.4f}; keeping the base body (head fitted on the same examples)."
    )
    ctx.train_info["kept_base_body"] = True
    return True


def _head_metrics(plan: Plan, ctx: Context, model, split: str, detail=True) -> tuple[dict, object]:
    """Fit the head on the training examples' embeddings; score it on `split`."""
    enc, bs, seed = plan.extra["enc"], plan.recipe.eval.batch_size, plan.recipe.train.seed
    embed = lambda rows: forward_batches(model, rows, bs, plan.pad_id, ctx.precision, mean_pooled)  # noqa: E731
    head = fit_head(embed(enc["train"]), enc["train_ids"], seed)
    probs = head.predict_proba(normalize(embed(enc[split])))
    y = enc[f"{split}_ids"]
    metrics = classification_metrics(y, probs.argmax(-1).tolist(), plan.data.labels, detail)
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return metrics, head


def head_numbers(head, labels: list[str]) -> dict:
    """A fitted logistic head as JSON numbers (no pickle), read back by classification.read_head."""
    return {
        "pooling": "mean",
        "normalize": True,
        "labels": labels,
        "coef": head.coef_.tolist(),
        "intercept": head.intercept_.tolist(),
    }


def load_head(model_dir: Path, width: int, outputs: str = "classes") -> dict:
    """The run's head.json, checked against its body's width and its labels (classification.read_head)."""
    return classification.read_head(model_dir / HEAD_FILE, width, outputs)
