"""Generation (chat / instruction / text) fine-tuning of decoder LLMs: SFT with the loss on the answers."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from ..data.conversations import load_generation
from ..engine.loop import Hooks
from ..errors import TunesmithError
from ..models.loading import (
    apply_dropout,
    apply_lora,
    load_causal_lm,
    load_tokenizer,
    model_kind,
    model_spec,
    resolve_weights,
)
from ..models.registry import default_lr
from ..recipe import LoraSection
from ..runs import rundir
from ..tasks.generation.formatting import auto_length, check_learnable, ensure_chat_template, pack, template_source
from ..tasks.generation.generate import causal_lm_loss, generate, split_prompt, validation_loss
from ..tasks.generation.metrics import answer_p95, answer_settings, generation_metrics
from ..tasks.generation.token_rows import encode_rows, learnable_rows
from .base import Context, Plan, tuning_mode

log = logging.getLogger(__name__)
STYLE_SAMPLES = 100  # training prompts the base model answers for the style judge (generation is the cost)


class SupervisedGeneration:
    """prompt/response, chat or plain text -> a decoder that answers like the data; base and tuned both
    generate answers to the held-out prompts, scored by exact match (label-like answers) or ROUGE-L."""

    def prepare(self, recipe, data=None) -> Plan:
        """`data`: already-built GenerationData (few_shot's prompts); else read per the recipe."""
        data = data or load_generation(recipe.data, recipe.train.seed)
        for split in (data.train, data.validation, data.evaluation):
            log.info(split.describe())
        weights, spec = resolve_weights(recipe.model.name), model_spec(recipe.model.name)
        kind = model_kind(weights, spec)
        mode = tuning_mode(recipe.method, kind)
        tokenizer = load_tokenizer(weights)
        if ensure_chat_template(tokenizer, recipe.model.chat_template):
            log.info(f"chat template: {template_source(recipe.model.chat_template)} (saved with the tuned model).")
        recipe, reason = auto_length(recipe, tokenizer, data.train.samples)
        rows, stats, warnings = _encode(recipe, data, tokenizer)
        for warning in warnings:
            log.warning(f"{warning}")
        prompts, references, metric_kind, max_new = _eval_prompts(recipe, data, stats["answer_p95"])
        style = _style_samples(recipe, data)
        cfg = recipe.train
        return Plan(
            recipe,
            "generation",
            tokenizer,
            weights,
            spec,
            kind,
            cfg.lr or default_lr(spec, "decoder", mode),
            rows["train"],
            loop_cfg=cfg.model_copy(update={"batch_size": stats["rows_per_batch"]}) if cfg.packing else cfg,
            info={
                "tuning": mode,
                "eval_set": data.eval_name,
                "eval_size": len(rows["evaluation"]),
                "generated": len(prompts),
                "generation_metric": metric_kind,
                "data": stats,
            },
            train_info={"packing": cfg.packing, "auto": [reason] if reason else []},
            warnings=warnings,
            data=data,
            extra={
                "rows": rows,
                "prompts": prompts,
                "references": references,
                "max_new": max_new,
                "answers": {},
                "style": style,
            },
        )

    def build(self, plan: Plan, ctx: Context):
        # built before the baseline, so that base and tuned are scored with the same weights' precision
        model = load_causal_lm(plan.weights, frozen_bf16=plan.info["tuning"] == "lora" and ctx.precision == "bf16")
        apply_dropout(model, plan.recipe.train)
        return model

    def baseline(self, plan: Plan, ctx: Context, model) -> dict:
        if plan.extra["style"]:  # before the base answers are scored: the judge scores them too
            _fit_style_judge(plan, ctx, model)
        if plan.recipe.eval.baseline == "none" and not self.needs_base_answers(plan):
            log.info("base: not scored (eval.baseline: none)")  # on a CPU its answers can cost as long as training
            return {}
        log.info(f"base: generating {len(plan.extra['prompts'])} answers ...")
        base = _evaluate(plan, ctx, model, "base")
        log.info(f"base: {_headline(base)}")
        return base

    @staticmethod
    def needs_base_answers(plan: Plan) -> bool:
        """Whether the run uses the base model's answers beyond scoring them (then made even under
        eval.baseline: none)."""
        return False

    def adapt(self, plan: Plan, ctx: Context, model):
        if plan.info["tuning"] == "lora":
            return apply_lora(model, plan.recipe.method.lora or LoraSection(), plan.spec, task_type="CAUSAL_LM")
        return model

    def hooks(self, plan: Plan, ctx: Context) -> Hooks:
        rows, ev = plan.extra["rows"]["validation"], plan.recipe.eval
        return Hooks(
            evaluate=lambda m: validation_loss(m, rows, ev.batch_size, plan.pad_id),
            compute_loss=causal_lm_loss,
            default_metric="loss",
        )

    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict:
        # LoRA merged while the tuned model answers: unmerged, every generated token runs two extra small matmuls
        # per adapted layer (SmolLM2 on a CPU: merged generated 1.36x faster). Merged is also how it is served, in
        # fp32. Not into a base held in bf16: most of a LoRA update is below a bf16 weight's rounding step and would
        # round away (SmolLM2 on 40 support answers: validation loss 1.664 merged in bf16, 1.642 as trained and served).
        merged = hasattr(model, "merge_adapter") and not _half_base(model)
        if merged:
            model.merge_adapter()
        try:
            tuned = _evaluate(plan, ctx, model, "tuned", _scored_in_loop(plan, result))
        finally:
            if merged:
                model.unmerge_adapter()  # the adapter is what is saved; the base must be the base again
        log.info(f"tuned: {_headline(tuned)} ({plan.data.eval_name} set)")
        return tuned

    def save(self, plan: Plan, ctx: Context, model) -> None:
        """LoRA runs keep just the adapter (`tunesmith export --merge` builds a full model); full runs the model."""
        target = ctx.run_dir / (rundir.ADAPTER_DIR if plan.info["tuning"] == "lora" else rundir.MODEL_DIR)
        model.save_pretrained(target)
        plan.tokenizer.save_pretrained(target)  # carries the chat template used in training
        if plan.extra.get("style_judge"):  # `tunesmith eval` scores new answers with the judge the run built
            from ..tasks.generation.style import FILE

            rundir.write_json(ctx.run_dir / FILE, plan.extra["style_judge"].to_json())
        rundir.write_jsonl(ctx.run_dir / "generations.jsonl", _side_by_side(plan))

    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None:
        from ..tasks.generation.report import write_generation_report

        samples = _side_by_side(plan)
        write_generation_report(ctx.run_dir, metrics, samples)

    @staticmethod
    def load_predictor(run_dir: Path, columns: dict, max_length: int | None = None, **kwargs):
        from ..tasks.generation.predictor import load_generation_model, run_predictor

        return run_predictor(run_dir, *load_generation_model(run_dir), **kwargs)


def _encode(recipe, data, tokenizer) -> tuple[dict, dict, list[str]]:
    cfg, loss_on = recipe.train, recipe.method.loss_on
    encoded = {
        name: encode_rows(tokenizer, getattr(data, name).samples, cfg.max_length, loss_on)  # memory-mapped, cached
        for name in ("train", "validation", "evaluation")
    }
    warnings = [w for name, enc in encoded.items() for w in check_learnable(enc, f"data.{name}", cfg.max_length)]
    rows = {name: learnable_rows(enc) for name, enc in encoded.items()}
    stats = {
        "format": data.train.format,
        "train_samples": len(rows["train"]),
        "answer_p95": answer_p95(rows["train"]) if data.train.format != "text" else None,
        "truncated": len(encoded["train"].truncated),
        "fully_masked": len(encoded["train"].fully_masked),
    }
    if cfg.packing:
        shuffled = list(rows["train"])
        random.Random(cfg.seed).shuffle(shuffled)
        tokens = sum(len(r["input_ids"]) for r in shuffled)
        rows["train"] = pack(shuffled, cfg.max_length)
        # A packed row holds several samples: keep the tokens per step (and so memory and the number
        # of steps) close to unpacked batches of train.batch_size samples.
        stats["packed_rows"] = len(rows["train"])
        stats["rows_per_batch"] = max(1, round(cfg.batch_size * tokens / len(shuffled) / cfg.max_length))
        log.info(
            f"packing: {stats['train_samples']} samples -> {len(rows['train'])} rows of <= {cfg.max_length} tokens, "
            f"{stats['rows_per_batch']} row(s) per batch"
        )
    return rows, stats, warnings


def _eval_prompts(recipe, data, train_p95: int | None = None) -> tuple[list, list[str], str, int]:
    """Held-out prompts and references (the last assistant turn), the metric and an answer-length limit (from the
    training answers' lengths, `train_p95` tokens, unless the recipe sets one)."""
    if data.evaluation.format == "text":
        return [], [], "none", 0
    samples = data.evaluation.samples
    if recipe.eval.max_samples is not None:  # 0: no answers at all, the loss alone
        samples = samples[: recipe.eval.max_samples]
    pairs = [split_prompt(s) for s in samples]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    return (prompts, references, *answer_settings(recipe.eval, references, train_p95))


def _side_by_side(plan: Plan) -> list[dict]:
    """Each held-out prompt with its reference and both answers (base None where eval.baseline: none)."""
    prompts, answers = plan.extra["prompts"], plan.extra["answers"]
    base, tuned = answers.get("base") or [None] * len(prompts), answers.get("tuned", [])
    return [
        {"prompt": p, "reference": r, "base": b, "tuned": t}
        for p, r, b, t in zip(prompts, plan.extra["references"], base, tuned)
    ]


def _half_base(model) -> bool:
    """Whether the frozen weights a LoRA adapter would merge into are held in 16 bits."""
    import torch

    return any(p.dtype in (torch.bfloat16, torch.float16) for p in model.parameters() if not p.requires_grad)


def _scored_in_loop(plan: Plan, result) -> dict | None:
    """The tuned model's loss on the evaluation rows where the loop has scored these very weights on them: the
    evaluation set is the validation set, and the loop keeps (restores) the epoch it scored. A pass over the
    validation set saved (on a CPU, about as long as an epoch's evaluation)."""
    kept = getattr(result, "best_metrics", None) or {}
    if plan.data.eval_name != "validation" or not {"loss", "perplexity"} <= kept.keys():
        return None
    return {"loss": kept["loss"], "perplexity": kept["perplexity"]}


def _evaluate(plan: Plan, ctx: Context, model, side: str, scored: dict | None = None) -> dict:
    """Answer-token loss on the evaluation rows (`scored`: already measured); generated answers to the held-out
    prompts, scored."""
    ev, prompts = plan.recipe.eval, plan.extra["prompts"]
    with ctx.accelerator.autocast():
        metrics = (
            dict(scored)
            if scored
            else validation_loss(model, plan.extra["rows"]["evaluation"], ev.batch_size, plan.pad_id)
        )
        start = time.perf_counter()
        answers = _answer(plan, model, prompts) if prompts else []
    if prompts:  # on a CPU, answering the held-out prompts is much of a generation run's time: say how much
        took = time.perf_counter() - start
        tokens = sum(len(ids) for ids in plan.tokenizer(answers, add_special_tokens=False)["input_ids"])
        metrics.update(generation_s=round(took, 2), generation_tokens_per_s=round(tokens / max(took, 1e-9), 1))
        metrics.update(
            generation_metrics(
                answers, plan.extra["references"], plan.info["generation_metric"], ev.metrics, prompts=prompts
            )
        )
        if plan.extra.get("style_judge"):
            metrics.update(plan.extra["style_judge"].score(answers))
    plan.extra["answers"][side] = answers
    return metrics


def _answer(plan: Plan, model, prompts: list) -> list[str]:
    """The model's answers as the run's evaluation generates them (its length limit and decoding settings)."""
    ev = plan.recipe.eval
    return generate(
        model,
        plan.tokenizer,
        prompts,
        max_new_tokens=plan.extra["max_new"],
        batch_size=min(ev.batch_size, 16),
        decoding=ev.decoding,
    )


def _style_samples(recipe, data) -> dict | None:
    """eval.style_reference: train -> up to STYLE_SAMPLES training (prompt, brand response) pairs, seeded."""
    if recipe.eval.style_reference is None:
        return None
    if data.train.format == "text":
        raise TunesmithError(
            "eval.style_reference: train needs prompts and responses (prompt/response columns or chat messages): "
            "the judge compares the brand's responses with the base model's answers to the same prompts."
        )
    samples = data.train.samples  # sampled by position, as sampling the pairs picks: no pair of the rest is built
    picked = random.Random(recipe.train.seed).sample(range(len(samples)), min(STYLE_SAMPLES, len(samples)))
    pairs = [split_prompt(samples[i]) for i in picked]
    return {"prompts": [p for p, _ in pairs], "brand": [r for _, r in pairs]}


def _fit_style_judge(plan: Plan, ctx: Context, model) -> None:
    from ..tasks.generation.style import fit_style_judge

    style = plan.extra["style"]
    log.info(f"style: the base model answers {len(style['prompts'])} training prompts, to learn the brand's voice from")
    with ctx.accelerator.autocast():
        other = _answer(plan, model, style["prompts"])
    judge = fit_style_judge(style["brand"], other, plan.recipe.train.seed)
    plan.extra["style_judge"] = judge
    style["base_answers"] = other  # the base model's answers to these training prompts (preference pairs reuse them)
    plan.info["style"] = judge.describe()
    log.info(
        f"style: the judge tells the brand from the base model {judge.judge_accuracy:.0%} of the time (5-fold); "
        f"distinctive n-grams: {', '.join(judge.ngrams[:8])}"
    )


def _headline(m: dict) -> str:
    parts = [f"loss {m['loss']:.4f}", f"perplexity {m['perplexity']:.2f}"]
    parts += [f"{k} {m[k]:.4f}" for k in ("exact_match", "rouge_l") if k in m]
    return ", ".join(parts)
