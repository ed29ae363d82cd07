"""Generation (chat / instruction / text) fine-tuning: data -> format -> base eval -> train -> tuned eval -> run dir."""

from __future__ import annotations

import random
from pathlib import Path

from rich.console import Console

from ..runs import rundir as runs
from ..data.conversations import load_generation
from ..engine.metrics import outcome_warnings
from ..engine.hardware import make_accelerator, resolve_precision
from .supervised import training_mode
from ..models.loading import apply_lora, load_causal_lm, load_tokenizer, model_kind, model_spec, resolve_weights, set_dropout
from ..recipe import LoraSection
from ..models.registry import default_lr
from ..engine.checkpoint import CHECKPOINT_FILE
from ..engine.loop import Hooks, run_loop
from ..tasks.generation.formatting import check_learnable, encode, ensure_chat_template, learnable, pack
from ..tasks.generation.generate import causal_lm_loss, generate, split_prompt, validation_loss
from ..tasks.generation.metrics import generation_metrics, is_label_like

console = Console(stderr=True)
DEFAULT_MAX_NEW_TOKENS = 256


def run_generation(recipe, output_dir, overwrite: bool, data=None, resume: bool = False) -> tuple[Path, dict]:
    """`data`: already-built GenerationData (e.g. few_shot's prompts); else read per the recipe."""
    data = data or load_generation(recipe.data, recipe.train.seed)
    for split in (data.train, data.validation, data.evaluation):
        console.print(split.describe())
    weights, spec = resolve_weights(recipe.model.name), model_spec(recipe.model.name)
    kind = model_kind(weights, spec)
    mode = training_mode(recipe, kind)
    tokenizer = load_tokenizer(weights)
    if ensure_chat_template(tokenizer):
        console.print("The model has no chat template; using tunesmith's default (saved with the tuned model).")
    rows, stats, warnings = _encode(recipe, data, tokenizer)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    lr = recipe.train.lr or default_lr(spec, "decoder", mode)
    return runs.run_in(recipe, output_dir, overwrite, lambda run_dir: _train_and_evaluate(
        recipe, data, rows, stats, warnings, weights, spec, tokenizer, mode, lr, run_dir), resume=resume)


def _encode(recipe, data, tokenizer) -> tuple[dict, dict, list[str]]:
    cfg, loss_on = recipe.train, recipe.method.loss_on
    encoded = {name: encode(tokenizer, getattr(data, name).samples, cfg.max_length, loss_on)
               for name in ("train", "validation", "evaluation")}
    warnings = [w for name, enc in encoded.items() for w in check_learnable(enc, f"data.{name}", cfg.max_length)]
    rows = {name: learnable(enc) for name, enc in encoded.items()}
    stats = {"format": data.train.format, "train_samples": len(rows["train"]),
             "truncated": len(encoded["train"].truncated), "fully_masked": len(encoded["train"].fully_masked)}
    if cfg.packing:
        shuffled = list(rows["train"])
        random.Random(cfg.seed).shuffle(shuffled)
        tokens = sum(len(r["input_ids"]) for r in shuffled)
        rows["train"] = pack(shuffled, cfg.max_length)
        # A packed row holds several samples: keep the tokens per step (and so memory and the number
        # of steps) close to unpacked batches of train.batch_size samples.
        stats["packed_rows"] = len(rows["train"])
        stats["rows_per_batch"] = max(1, round(cfg.batch_size * tokens / len(shuffled) / cfg.max_length))
        console.print(f"packing: {stats['train_samples']} samples -> {len(rows['train'])} rows of <= {cfg.max_length} tokens, "
                      f"{stats['rows_per_batch']} row(s) per batch")
    return rows, stats, warnings


def _train_and_evaluate(recipe, data, rows, stats, warnings, weights, spec, tokenizer, mode, lr, run_dir: Path) -> dict:
    from accelerate.utils import set_seed

    cfg, ev = recipe.train, recipe.eval
    precision = resolve_precision(cfg.precision)
    accelerator = make_accelerator(cfg, precision)
    set_seed(cfg.seed)
    model = load_causal_lm(weights)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    pad_id = tokenizer.pad_token_id
    prompts, references, metric_kind, max_new = _eval_prompts(recipe, data)
    evaluate_gen = lambda m: _evaluate(m, tokenizer, rows["evaluation"], prompts, references, metric_kind, max_new, ev, pad_id, accelerator)  # noqa: E731
    console.print(f"base: generating {len(prompts)} answers ...")
    base, base_answers = evaluate_gen(model)
    console.print(f"base: {_headline(base)}")
    if mode == "lora":
        model = apply_lora(model, recipe.method.lora or LoraSection(), spec, task_type="CAUSAL_LM")
    hooks = Hooks(evaluate=lambda m: validation_loss(m, rows["validation"], ev.batch_size, pad_id),
                  compute_loss=causal_lm_loss, default_metric="loss")
    loop_cfg = cfg.model_copy(update={"batch_size": stats["rows_per_batch"]}) if cfg.packing else cfg
    result = run_loop(model, accelerator, rows["train"], None, loop_cfg, lr, hooks, pad_id, run_dir / runs.LOG_FILE,
                      checkpoint=run_dir / CHECKPOINT_FILE)
    model = accelerator.unwrap_model(model)
    tuned, tuned_answers = evaluate_gen(model)
    console.print(f"tuned: {_headline(tuned)} ({data.eval_name} set)")
    metrics = {
        "task": "generation", "method": recipe.method.name, "model": recipe.model.name, "tuning": mode,
        "eval_set": data.eval_name, "eval_size": len(rows["evaluation"]), "generated": len(prompts),
        "generation_metric": metric_kind, "base": base, "tuned": tuned, "data": stats,
        "train": {"runtime_s": result.runtime_s, "samples_per_s": result.samples_per_s, "tokens_per_s": result.tokens_per_s,
                  **result.scale,
                  "epochs": result.epochs_run, "best_epoch": result.best_epoch, "lr": lr, "precision": precision,
                  "packing": cfg.packing, "history": result.history},
        "warnings": warnings,
    }
    metrics["outcome_warnings"] = outcome_warnings(metrics)
    for warning in metrics["outcome_warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")
    if accelerator.is_main_process:
        _save(run_dir, model, tokenizer, mode)
        samples = [{"prompt": p, "reference": r, "base": b, "tuned": t}
                   for p, r, b, t in zip(prompts, references, base_answers, tuned_answers)]
        runs.write_jsonl(run_dir / "generations.jsonl", samples)
        runs.write_json(run_dir / runs.METRICS_FILE, metrics)
        from ..tasks.generation.report import write_generation_report
        write_generation_report(run_dir, metrics, samples)
    return metrics


def _eval_prompts(recipe, data) -> tuple[list, list[str], str, int]:
    """Held-out prompts and references (the last assistant turn), the metric and an answer-length limit."""
    if data.evaluation.format == "text":
        return [], [], "none", 0
    pairs = [split_prompt(s) for s in data.evaluation.samples]
    if recipe.eval.max_samples:
        pairs = pairs[:recipe.eval.max_samples]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    return (prompts, references, *answer_settings(recipe.eval, references))


def answer_settings(ev, references: list[str]) -> tuple[str, int]:
    """The generation metric (exact_match for label-like references) and the answer-length limit."""
    kind = ev.generation_metric
    if kind == "auto":
        kind = "exact_match" if is_label_like(references) else "rouge_l"
    return kind, ev.max_new_tokens or (32 if kind == "exact_match" else DEFAULT_MAX_NEW_TOKENS)


def _evaluate(model, tokenizer, rows, prompts, references, kind, max_new, ev, pad_id, accelerator) -> tuple[dict, list[str]]:
    with accelerator.autocast():
        metrics = validation_loss(model, rows, ev.batch_size, pad_id)
        answers = generate(model, tokenizer, prompts, max_new_tokens=max_new, batch_size=min(ev.batch_size, 16)) if prompts else []
    if prompts:
        metrics.update(generation_metrics(answers, references, kind))
    return metrics, answers


def _headline(m: dict) -> str:
    parts = [f"loss {m['loss']:.4f}", f"perplexity {m['perplexity']:.2f}"]
    parts += [f"{k} {m[k]:.4f}" for k in ("exact_match", "rouge_l") if k in m]
    return ", ".join(parts)


def _save(run_dir: Path, model, tokenizer, mode: str) -> None:
    """LoRA runs keep just the adapter (`tunesmith export --merge` builds a full model); full runs the model."""
    target = run_dir / (runs.ADAPTER_DIR if mode == "lora" else runs.MODEL_DIR)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)  # carries the chat template used in training
