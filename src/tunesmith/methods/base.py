"""What every method provides. A method is a small object of this shape; `session.py` runs any of them
through the one run skeleton, and `methods/__init__.py` is the only place a recipe's names map to one.

    prepare(recipe) -> Plan                 read and check the data, load the tokenizer, encode (before the
                                            run directory exists: bad data fails before anything is written)
    build(plan, ctx) -> model               the model as loaded, before any adaptation
    baseline(plan, ctx, model) -> dict      the base model's metrics on the evaluation set ({} when off)
    adapt(plan, ctx, model) -> model        what changes the model before training (LoRA, frozen layers, a
                                            head started from a probe, a warmed-up MLM head)
    hooks(plan, ctx) -> Hooks               loss, regulariser and validation for the shared loop
    evaluate(plan, ctx, model, result)      the tuned model's metrics on the evaluation set
    save(plan, ctx, model)                  the run's model, in a form that loads without tunesmith
    report(plan, ctx, metrics)              report.md and plots
    load_predictor(run_dir, **kw)           (static) a finished run of this method, ready to predict

A method that is not one training run (continual: a model carried across experiences) provides
`run(recipe, output_dir, overwrite, resume, files)` instead, and trains each experience through the
skeleton's own training step (`session.train`) with build/baseline/adapt/hooks of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["Context", "Method", "Plan", "tuning_mode", "with_train_defaults"]


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


class Method(Protocol):
    # train settings this method runs with when the recipe leaves them unset (they beat the general `auto`
    # rules for it); `tunesmith recipe reference` lists them per method
    train_defaults: ClassVar[dict]

    def prepare(self, recipe) -> Plan: ...
    def build(self, plan: Plan, ctx: Context): ...
    def baseline(self, plan: Plan, ctx: Context, model) -> dict: ...
    def adapt(self, plan: Plan, ctx: Context, model): ...
    def hooks(self, plan: Plan, ctx: Context): ...
    def evaluate(self, plan: Plan, ctx: Context, model, result) -> dict: ...
    def save(self, plan: Plan, ctx: Context, model) -> None: ...
    def report(self, plan: Plan, ctx: Context, metrics: dict) -> None: ...


def with_train_defaults(recipe, method):
    """A copy of the recipe with the method's own defaults in the train keys the recipe left unset (the caller's
    recipe is not changed, and the saved recipe says what ran)."""
    defaults = {
        k: v for k, v in getattr(method, "train_defaults", {}).items() if k not in recipe.train.model_fields_set
    }
    recipe = recipe.model_copy(deep=True)
    for key, value in defaults.items():
        setattr(recipe.train, key, value)
    return recipe


def tuning_mode(method, kind: str) -> str:
    """full | lora. 'auto': LoRA for decoders (a few MB of adapters instead of the whole model) or when a
    lora section is given; full fine-tuning for encoders, which are small enough to train whole."""
    tuning = getattr(method, "tuning", "auto")
    if tuning != "auto":
        return tuning
    return "lora" if getattr(method, "lora", None) is not None or kind == "decoder" else "full"


def model_parts(recipe) -> tuple[str, dict, str, object]:
    """(weights folder, registry entry, encoder|decoder, tokenizer) of the recipe's model."""
    from ..models.loading import load_tokenizer, model_kind, model_spec, resolve_weights

    weights, spec = resolve_weights(recipe.model.name), model_spec(recipe.model.name)
    return weights, spec, model_kind(weights, spec), load_tokenizer(weights)


def save_base_head(plan: Plan, ctx: Context) -> None:
    """The base line's linear head (plan.extra["base_head"], plain numbers) as base_head.json: the base model can
    answer again beside the tuned one (predict and eval --base, the playground). Nothing when the run kept none."""
    from ..runs import rundir

    if plan.extra.get("base_head"):
        rundir.write_json(ctx.run_dir / rundir.BASE_HEAD_FILE, plan.extra["base_head"])


def load_run_model(run_dir, auto_class):
    """(model, tokenizer) a run saved in model/: local files, safetensors only, damage as a clear message."""
    from ..models.loading import load_tokenizer
    from ..runs import rundir

    model_dir = run_dir / rundir.MODEL_DIR
    tokenizer = rundir.load_saved_model(model_dir, load_tokenizer)
    model = rundir.load_saved_model(
        model_dir, lambda path: auto_class.from_pretrained(path, local_files_only=True, use_safetensors=True)
    )
    return model, tokenizer
