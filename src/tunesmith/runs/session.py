"""The one run skeleton every method runs through: seed and accelerator, model, base line, adaptation, the
shared loop, the tuned model's evaluation, save, metrics (with memory) and report. A method (see
methods/base.py) fills in the steps; nothing here knows a method's name."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.checkpoint import CHECKPOINT_FILE
from ..engine.hardware import make_accelerator, resolve_precision
from ..engine.loop import run_loop
from ..engine.metrics import outcome_warnings
from . import rundir

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Everything one run needs that is known before training starts."""

    recipe: Any  # the recipe this run trains with (a method may adjust its own copy)
    task: str  # metrics["task"]: classification | generation | domain_adaptation
    tokenizer: Any
    weights: str  # the folder (or Hub id) from_pretrained loads
    spec: dict  # the model's registry entry ({} for a Hub id or a folder)
    kind: str  # encoder | decoder
    lr: float  # peak learning rate (the recipe's, else the method's default)
    rows: list[dict]  # the training rows the loop sees
    label_ids: list | None = None
    loop_cfg: Any = None  # the train section the loop runs with (default: the recipe's)
    info: dict = field(default_factory=dict)  # method-specific top-level keys of metrics.json
    train_info: dict = field(default_factory=dict)  # method-specific keys of metrics["train"]
    warnings: list[str] | None = field(default_factory=list)  # None: no "warnings" key in metrics.json
    data: Any = None  # the method's own data (ClassificationData, GenerationData, documents)
    extra: dict = field(default_factory=dict)  # what a method carries between its own steps

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


@dataclass
class Context:
    """What the session gives a method while it runs."""

    accelerator: Any
    precision: str
    run_dir: Path
    train_info: dict = field(default_factory=dict)  # costs measured in a step (e.g. head_init_s), into metrics["train"]


def run_method(method, recipe, output_dir, overwrite: bool, resume: bool = False, files: dict | None = None):
    """Plan first (bad data fails before a folder is made), then the session inside a run directory."""
    from .auto import resolve

    saved = None
    if resume:  # a resumed run keeps the settings it started with
        saved = rundir.read_yaml(Path(output_dir or recipe.output.dir) / rundir.RECIPE_FILE).get("train") or {}
    plan = resolve(method.prepare(recipe), saved)  # auto settings and the memory fit, printed before any folder is made
    return rundir.run_in(
        plan.recipe, output_dir, overwrite, lambda run_dir: session(method, plan, run_dir), resume=resume, files=files
    )


def session(method, plan: Plan, run_dir: Path) -> dict:
    from accelerate.utils import set_seed

    cfg = plan.recipe.train
    precision = resolve_precision(cfg.precision)
    ctx = Context(make_accelerator(cfg, precision), precision, run_dir)
    set_seed(cfg.seed)
    model = method.build(plan, ctx)
    if (plan.loop_cfg or cfg).gradient_checkpointing is True and hasattr(model, "gradient_checkpointing_enable"):
        # non-reentrant: works with frozen inputs (LoRA) and needs no enable_input_require_grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base = method.baseline(plan, ctx, model)
    model = method.adapt(plan, ctx, model)
    result = run_loop(
        model,
        ctx.accelerator,
        plan.rows,
        plan.label_ids,
        plan.loop_cfg or cfg,
        plan.lr,
        method.hooks(plan, ctx),
        plan.pad_id,
        run_dir / rundir.LOG_FILE,
        checkpoint=run_dir / CHECKPOINT_FILE,
    )
    model = ctx.accelerator.unwrap_model(model)
    tuned = method.evaluate(plan, ctx, model, result)
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
