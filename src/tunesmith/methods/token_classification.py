"""Token classification (named entities, information extraction): a tag per word from a head on every
token, trained on each word's first sub-token; entity-level F1 with seqeval, base vs tuned."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data.token_files import load_tokens
from ..engine.loop import Hooks
from ..models.loading import apply_dropout, apply_lora, fill_head, freeze_bottom, load_token_classifier, saved_tags
from ..models.registry import default_lr
from ..recipe import LoraSection
from ..runs import rundir
from ..tasks import token_classification as tc
from .base import Context, Plan, load_run_model, model_parts, save_base_head, tuning_mode
from .head_init import PROBE_BELOW_STEPS_PER_TAG, probe_wanted

log = logging.getLogger(__name__)


class SupervisedTokenClassifier:
    def prepare(self, recipe) -> Plan:
        recipe = recipe.model_copy(deep=True)
        # the saved recipe records what was frozen: a resumed run reads every field as set, and must freeze the same
        recipe.method.freeze_embeddings, recipe.method.freeze_layers = token_freezing(recipe.method)
        data = load_tokens(recipe.data, recipe.train.seed)
        (weights, spec, kind, tokenizer), cfg = model_parts(recipe), recipe.train
        rows, firsts, cut = {}, {}, {}
        for name in ("train", "validation", "evaluation"):
            split = getattr(data, name)
            rows[name], firsts[name], cut[name] = tc.encode_table(  # memory-mapped, cached
                tokenizer, split.tokens, split.tags, data.labels, cfg.max_length, recipe.method.label_all_subtokens
            )
        if cut["train"]:  # long documents train as the overlapping windows of words that tag them in predict
            texts = len(data.train)
            data.train, rows["train"], firsts["train"] = tc.train_windows(
                tokenizer,
                data.train,
                rows["train"],
                firsts["train"],
                data.labels,
                cfg.max_length,
                recipe.method.label_all_subtokens,
            )
            log.info(
                f"{cut['train']} of {texts} training texts exceed train.max_length={cfg.max_length} sub-tokens: they "
                f"train as overlapping windows of words ({len(data.train)} training examples in all)."
            )
        lr = cfg.lr or default_lr(spec, kind, tuning_mode(recipe.method, kind))
        types = sorted({t[2:] for t in data.labels if t != "O"})
        return Plan(
            recipe,
            "token_classification",
            tokenizer,
            weights,
            spec,
            kind,
            lr,
            rows["train"],
            info={
                "eval_set": data.eval_name,
                "eval_size": len(data.evaluation),
                "labels": data.labels,
                "entity_types": types,
            },
            warnings=data.warnings,
            data=data,
            train_info={"train_size": len(data.train), "truncated": cut["train"]},
            extra={"rows": rows, "firsts": firsts},
        )

    def build(self, plan: Plan, ctx: Context):
        return load_token_model(plan.weights, plan.data.labels, plan.recipe.train)

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        base, plan.extra["probe_head"] = tc.probe_baseline(
            plan.recipe,
            plan.weights,
            plan.extra["rows"],
            plan.extra["firsts"],
            plan.data,
            plan.data.labels,
            plan.pad_id,
            ctx.precision,
        )
        if plan.extra["probe_head"] is not None:  # as numbers: the base model answers again with it (save)
            plan.extra["base_head"] = tc.head_numbers(plan.data.labels, *plan.extra["probe_head"])
        return base

    def adapt(self, plan: Plan, ctx: Context, model):
        method = plan.recipe.method
        start_tag_head(plan, ctx, model)
        if tuning_mode(method, plan.kind) == "lora":
            return apply_lora(model, method.lora or LoraSection(), plan.spec, task_type="TOKEN_CLS")
        freeze_bottom(model, *token_freezing(method))
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        return Hooks(evaluate=lambda m: self._score(plan, ctx, m, "validation", detail=False), default_metric="f1")

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        tuned = self._score(plan, ctx, model, "evaluation", detail=True)
        log.info(
            f"tuned: entity F1 {tuned['f1']:.4f} (precision {tuned['precision']:.4f}, recall {tuned['recall']:.4f}; "
            f"{plan.data.eval_name} set)"
        )
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        rundir.save_model(ctx.run_dir, model, plan.tokenizer)
        save_base_head(plan, ctx)

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        from ..tasks.token_report import write_report

        write_report(ctx.run_dir, metrics)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, **kwargs):
        from transformers import AutoModelForTokenClassification

        from ..recipe import load_recipe

        model, tokenizer = load_run_model(run_dir, AutoModelForTokenClassification)
        recipe = load_recipe(rundir.read_yaml(run_dir / rundir.RECIPE_FILE))
        data = (
            recipe.data if recipe.data is not None else recipe.experiences[0].data
        )  # a continual run: its first experience's columns
        return tc.TokenPredictor(model, tokenizer, columns=columns, data=data, **kwargs)

    @staticmethod
    def _score(plan: Plan, ctx: Context, model, split: str, detail: bool) -> dict:
        firsts, bs, labels = plan.extra["firsts"][split], plan.recipe.eval.batch_size, plan.data.labels
        probs = tc.word_scores(model, plan.extra["rows"][split], firsts, bs, plan.pad_id, ctx.precision)
        words, max_length = getattr(plan.data, split).tokens, plan.recipe.train.max_length
        probs = tc.long_sentence_scores(
            model, plan.tokenizer, words, probs, firsts, labels, max_length, bs, ctx.precision
        )
        return tc.ner_metrics(getattr(plan.data, split).tags, tc.tags_of(probs, labels), detail)


def start_tag_head(plan: Plan, ctx: Context, model) -> None:
    """LP-FT for tags: a new tag head starts as the per-token probe (the base line's, else one fitted on the
    body's word vectors) when method.head_init asks for it (see head_init.probe_wanted); with few steps per tag
    a random head is still learning the tags when training ends, below the probe (docs/why-defaults.md).
    A head carried over from a stage with the same tags is already trained and is kept."""
    labels, train, method = plan.data.labels, plan.recipe.train, plan.recipe.method
    wanted = probe_wanted(
        method.head_init, len(labels), len(plan.rows), plan.loop_cfg or train, PROBE_BELOW_STEPS_PER_TAG
    )
    ctx.train_info["head_init_s"] = 0.0
    if not wanted or saved_tags(plan.weights) == list(labels):
        return
    start, rows, firsts = time.perf_counter(), plan.extra["rows"]["train"], plan.extra["firsts"]["train"]
    head = plan.extra.get("probe_head")
    if head is None:  # no base line was run (eval.baseline: none): fit the probe on the model's own body
        bs, tags = plan.recipe.eval.batch_size, plan.data.train.tags
        head = tc.fitted_head(model.base_model, rows, firsts, tags, labels, bs, plan.pad_id, ctx.precision, train.seed)
    if fill_head(model, *head):
        log.info("tag head: started from the per-token probe on the body's word vectors")
        ctx.train_info["head_start"] = "probe"  # the report says so
    model.train()
    ctx.train_info["head_init_s"] = time.perf_counter() - start


def load_token_model(weights: str, labels: list[str], train_cfg):
    """The body with a token head for `labels` (a new head, or a saved run's own when the labels match), with the
    recipe's dropout; attention dropout off unless the recipe sets it (see train.attention_dropout)."""
    model = load_token_classifier(weights, labels)
    apply_dropout(model, train_cfg, attention_auto=0.0)
    return model


def token_freezing(method) -> tuple[bool, int | str]:
    """(freeze_embeddings, freeze_layers) for a tag head: unless the recipe says otherwise, nothing is frozen. Words
    are classified from their own pieces, and rare domain words (disease and drug names) need their embeddings and
    lower layers to move: more entity F1 for a slower step (docs/why-defaults.md)."""
    chosen = method.model_fields_set
    return (
        method.freeze_embeddings if "freeze_embeddings" in chosen else False,
        method.freeze_layers if "freeze_layers" in chosen else 0,
    )
