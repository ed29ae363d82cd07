"""few_shot for multi-label data: a handful of texts per label -> pairs (shared label = similar) -> contrastive
body -> one logistic regression per label on the tuned embeddings, thresholds chosen on validation.

The SetFit recipe with its one-vs-rest head. Base = the same heads on the untouched body's embeddings of the
same examples, so the comparison isolates what the contrastive step adds, as in single-label few-shot.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.multilabel import load_multilabel, multi_hot
from ..engine.batching import tokenize
from ..engine.metrics import forward_batches, mean_pooled
from ..errors import TunesmithError
from ..log import reader_warnings
from ..models.loading import apply_dropout, load_encoder
from ..runs import rundir
from ..tasks import multilabel
from ..tasks.classification import head_proba
from .base import Context, Plan, model_parts, save_base_head, with_train_defaults
from .few_shot import BODY_LR, HEAD_FILE, load_head
from .multilabel import THRESHOLDS_FILE, _bce, save_thresholds
from .pairs import make_hooks, make_set_pairs, normalize, pair_rows

log = logging.getLogger(__name__)


class FewShotMultiLabel:
    train_defaults = {"epochs": 1, "batch_size": 16}  # one pass over the pairs, 16 per step, as single-label few-shot

    def prepare(self, recipe) -> Plan:
        recipe = with_train_defaults(recipe, self)
        (weights, spec, kind, tokenizer), cfg = model_parts(recipe), recipe.train
        if kind == "decoder":
            raise TunesmithError(
                "few_shot multi-label needs an encoder (e.g. minilm-l6): its embeddings carry the per-label "
                "heads. For a decoder use method: supervised with a label per line."
            )
        data = load_multilabel(recipe.data, cfg.seed)
        reader_warnings(data.warnings, recipe.train.data_check)
        names = ("train", "validation", "evaluation")
        enc = {
            name: tokenize(tokenizer, getattr(data, name).texts, getattr(data, name).pairs, cfg.max_length)[0]
            for name in names
        }
        targets = {name: np.asarray(multi_hot(getattr(data, name).labels, data.labels)) for name in names}
        pairs = make_set_pairs(data.train.labels, recipe.method.pairs_per_example * len(data.train), cfg.seed)
        if not any(t for _, _, t in pairs) or all(t for _, _, t in pairs):
            raise TunesmithError(
                f"{recipe.data.train}: few-shot needs both texts that share a label and texts that share none; "
                "add examples of more labels."
            )
        log.info(f"few-shot: {len(data.train)} examples -> {len(pairs)} pairs (half sharing a label)")
        rows, pair_targets = pair_rows(enc["train"], pairs)
        return Plan(
            recipe,
            "multi_label",
            tokenizer,
            weights,
            spec,
            kind,
            cfg.lr or BODY_LR,
            rows,
            pair_targets,
            info={"eval_set": data.eval_name, "eval_size": len(data.evaluation), "labels": data.labels},
            warnings=data.warnings,
            data=data,
            train_info={"train_size": len(data.train), "pairs": len(pairs)},
            extra={"enc": enc, "targets": targets, "heads": {}},
        )

    def build(self, plan: Plan, ctx: Context):
        model = load_encoder(plan.weights)
        apply_dropout(model, plan.recipe.train)  # train.dropout / attention_dropout hold for every method
        return model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        if plan.recipe.eval.baseline == "none":
            return {}
        base, head = _scored(plan, ctx, model)
        plan.extra["base_head"] = {**head, "separator": plan.recipe.data.label_separator}
        log.info(f"base: micro-F1 {base['f1_micro']:.4f}, macro-F1 {base['f1_macro']:.4f}")
        return {
            "kind": f"a logistic regression per label on the untuned body's embeddings of the same "
            f"{len(plan.data.train)} "
            "examples",
            **base,
        }

    def adapt(self, plan: Plan, ctx: Context, model):
        return model

    def hooks(self, plan: Plan, ctx: Context):
        def evaluate(model):  # validation loss of the heads fit on this epoch's embeddings picks the best epoch
            probs = _probs(plan, ctx, model, ("validation",))[0]["validation"]
            y = plan.extra["targets"]["validation"]
            metrics = multilabel.multilabel_metrics(y, probs >= 0.5, plan.data.labels, detail=False)
            return {**metrics, "loss": _bce(probs, y)}

        return make_hooks(evaluate)

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        tuned, head = _scored(plan, ctx, model)
        plan.extra["head"] = head
        plan.info["thresholds"] = plan.extra["thresholds"] = head.pop("thresholds")
        log.info(
            f"tuned: micro-F1 {tuned['f1_micro']:.4f}, macro-F1 {tuned['f1_macro']:.4f} ({plan.data.eval_name} set, "
            "thresholds chosen on validation)"
        )
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        """The body in plain Hugging Face format (AutoModel), the heads and thresholds as JSON numbers (no pickle)."""
        target = ctx.run_dir / rundir.MODEL_DIR
        model.save_pretrained(target)
        plan.tokenizer.save_pretrained(target)
        rundir.write_json(target / HEAD_FILE, plan.extra["head"])
        save_thresholds(target, plan)
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        multilabel.write_report(ctx.run_dir, metrics)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from ..models.loading import load_tokenizer

        model_dir = run_dir / rundir.MODEL_DIR
        body = rundir.load_saved_model(model_dir, load_encoder)
        head = load_head(model_dir, body.config.hidden_size, "labels")
        thresholds = rundir.read_json(model_dir / THRESHOLDS_FILE)
        if not head.get("multi_label") or len(thresholds.get("per_label") or []) != len(head["labels"]):
            raise TunesmithError(
                f"{model_dir}: head.json and thresholds.json do not describe the same labels; train the run "
                "again, or restore the files."
            )
        return multilabel.MultiLabelPredictor(
            body,
            rundir.load_saved_model(model_dir, load_tokenizer),
            thresholds,
            columns=columns,
            separator=thresholds.get("separator"),
            head=head,
            **kwargs,
        )


def fit_heads(x: np.ndarray, y: np.ndarray, labels: list[str], seed: int) -> dict:
    """One logistic regression per label on L2-normalised embeddings, as numbers. A label that is on (or off) for
    every training text cannot be learned from them: its head answers its training frequency."""
    from sklearn.linear_model import LogisticRegression

    x = normalize(x)
    coef, intercept = np.zeros((y.shape[1], x.shape[1])), np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            clf = LogisticRegression(max_iter=2000, random_state=seed).fit(x, y[:, j])
            coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
        else:
            prior = np.clip(y[:, j].mean(), 1e-4, 1 - 1e-4)
            intercept[j] = np.log(prior / (1 - prior))
    return {
        "pooling": "mean",
        "normalize": True,
        "multi_label": True,
        "labels": list(labels),
        "coef": coef.tolist(),
        "intercept": intercept.tolist(),
    }


def _probs(plan: Plan, ctx: Context, model, splits: tuple[str, ...]) -> tuple[dict, dict]:
    """Heads fit on the training examples' embeddings; their probabilities on each split."""
    enc, bs = plan.extra["enc"], plan.recipe.eval.batch_size
    embed = lambda rows: forward_batches(model, rows, bs, plan.pad_id, ctx.precision, mean_pooled)  # noqa: E731
    head = fit_heads(embed(enc["train"]), plan.extra["targets"]["train"], plan.data.labels, plan.recipe.train.seed)
    return {split: head_proba(head, embed(enc[split])) for split in splits}, head


def _scored(plan: Plan, ctx: Context, model) -> tuple[dict, dict]:
    """Metrics on the evaluation set at thresholds chosen on validation; the head carries its thresholds."""
    splits = ("validation",) if plan.data.eval_name == "validation" else ("validation", "evaluation")
    probs, head = _probs(plan, ctx, model, splits)
    thresholds = multilabel.choose_thresholds(plan.extra["targets"]["validation"], probs["validation"])
    chosen = probs[splits[-1]] >= np.asarray(thresholds["per_label"])
    metrics = multilabel.multilabel_metrics(plan.extra["targets"]["evaluation"], chosen, plan.data.labels)
    return metrics, {**head, "thresholds": thresholds}
