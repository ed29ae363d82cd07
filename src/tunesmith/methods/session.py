"""The one run skeleton every method runs through: seed and accelerator, model, base line, adaptation, the
shared loop (`train`, which continual learning also runs once per experience), the tuned model's evaluation,
save, metrics (with memory) and report. A method (see base.py) fills in the steps; nothing here knows a
method's name."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..engine.checkpoint import CHECKPOINT_FILE
from ..engine.dropout import cheap_dropout
from ..engine.hardware import make_accelerator, resolve_precision
from ..engine.loop import run_loop
from ..engine.metrics import outcome_warnings
from ..runs import rundir
from .base import Context, Plan

log = logging.getLogger(__name__)


def run_method(method, recipe, output_dir, overwrite: bool, resume: bool = False, files: dict | None = None):
    """Plan first (bad data fails before a folder is made), then the session inside a run directory."""
    from ..runs.auto import resolve

    saved = None
    if resume:  # a resumed run keeps the settings it started with
        saved = rundir.read_yaml(Path(output_dir or recipe.output.dir) / rundir.RECIPE_FILE).get("train") or {}
    start = time.perf_counter()
    plan = resolve(method.prepare(recipe), saved)  # auto settings and the memory fit, printed before any folder is made
    plan.train_info["prepare_s"] = time.perf_counter() - start  # reading and tokenizing: where large files cost
    with rundir.RunDir.open(plan.recipe, output_dir, overwrite, resume, files) as run:
        metrics = session(method, plan, run.path)
    return run.path, metrics


def session(method, plan: Plan, run_dir: Path) -> dict:
    cfg = plan.recipe.train
    ctx, model, base, result = train(
        method, plan, run_dir, run_dir / rundir.LOG_FILE, checkpoint=run_dir / CHECKPOINT_FILE, seed=cfg.seed
    )
    start = time.perf_counter()
    tuned = method.evaluate(plan, ctx, model, result)
    ctx.train_info["evaluate_s"] = time.perf_counter() - start
    metrics = {
        "task": plan.task,
        "method": plan.recipe.method.name,
        "model": plan.recipe.model.name,
        "model_kind": plan.kind,
        **plan.info,
        "base": base,
        "tuned": tuned,
        "train": train_block(result, plan, ctx),
    }
    if plan.warnings is not None:
        metrics["warnings"] = plan.warnings
    metrics["outcome_warnings"] = outcome_warnings(metrics)
    for warning in metrics["outcome_warnings"]:
        log.warning(f"{warning}")
    if ctx.accelerator.is_main_process:
        method.save(plan, ctx, model)
        rundir.write_metrics(run_dir, metrics)
        method.report(plan, ctx, metrics)
    return metrics


def train(method, plan: Plan, run_dir: Path, log_path: Path, checkpoint: Path | None, seed: int | None):
    """The training every run goes through, whole or one experience of a continual run: accelerator and
    precision, seed, the method's model, its base line, its adaptation, and the one loop with the method's
    hooks. `seed` None: the caller seeded already (continual seeds before it grows the head).
    Returns (context, unwrapped model, base metrics, loop result)."""
    from accelerate.utils import set_seed

    cfg = plan.recipe.train
    precision = resolve_precision(cfg.precision)
    ctx = Context(make_accelerator(cfg, precision), precision, run_dir)
    if seed is not None:
        set_seed(seed)
    model = method.build(plan, ctx)
    if (plan.loop_cfg or cfg).gradient_checkpointing is True and hasattr(model, "gradient_checkpointing_enable"):
        # non-reentrant: works with frozen inputs (LoRA) and needs no enable_input_require_grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    start = time.perf_counter()
    base = method.baseline(plan, ctx, model)
    ctx.train_info["baseline_s"] = time.perf_counter() - start
    model = method.adapt(plan, ctx, model)
    if ctx.accelerator.device.type == "cpu":
        cheap_dropout(model)  # after adapt: the LoRA path's dropout too
    result = run_loop(
        model,
        ctx.accelerator,
        plan.rows,
        plan.label_ids,
        plan.loop_cfg or cfg,
        plan.lr,
        method.hooks(plan, ctx),
        plan.pad_id,
        log_path,
        checkpoint=checkpoint,
    )
    return ctx, ctx.accelerator.unwrap_model(model), base, result


def train_block(result, plan: Plan, ctx: Context) -> dict:
    """metrics["train"]: what the loop measured, the settings it ran with, and what the method adds."""
    return {
        "runtime_s": result.runtime_s,
        **ctx.train_info,
        "samples_per_s": result.samples_per_s,
        "tokens_per_s": result.tokens_per_s,
        **result.scale,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "lr": plan.lr,
        "precision": ctx.precision,
        **plan.train_info,
        "history": result.history,
    }
