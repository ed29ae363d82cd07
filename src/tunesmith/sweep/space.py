"""What a sweep searches and what it optimises: the recipe's `sweep.params`, else a default space per task and
tuning mode; the validation metric and its direction; a trial's recipe from the values Optuna suggests."""

from __future__ import annotations

import copy

from ..recipe import Recipe, SweepRange, set_dotted, task_kind

# The default spaces (literal data, documented in docs/sweeps.md): around what tunesmith's defaults pick, wide
# enough to find a better setting when one exists. Encoders train whole; decoders through LoRA adapters.
DEFAULT_SPACES: dict[str, dict] = {
    "full": {
        "train.lr": {"low": 1e-5, "high": 3e-4, "log": True},
        "train.epochs": [2, 3, 4, 6],
        "train.batch_size": [8, 16, 32],
        "train.weight_decay": {"low": 0.0, "high": 0.1},
        "train.warmup_ratio": {"low": 0.0, "high": 0.2},
    },
    "lora": {
        "train.lr": {"low": 5e-5, "high": 2e-3, "log": True},
        "train.epochs": [1, 2, 3],
        "method.lora.r": [4, 8, 16, 32],
        "method.lora.dropout": {"low": 0.0, "high": 0.2},
    },
}
# The metric a trial is judged by when sweep.metric is unset: the task's headline on the validation set.
DEFAULT_METRICS = {
    "classification": "f1_macro",
    "multi_label": "f1_macro",
    "token_classification": "f1",
    "regression": "spearman",
    "generation": "loss",
}
LOWER_IS_BETTER = ("loss", "perplexity", "mse", "mae", "hamming_loss", "pair_loss")
ANSWER_FREE = ("loss", "perplexity")  # generation metrics of the answer-token loss: no answer is generated for them


def search_space(recipe: Recipe) -> dict[str, SweepRange | list]:
    """sweep.params, else the default space for the recipe's tuning mode (validated like the recipe's own)."""
    params = recipe.sweep.params if recipe.sweep else {}
    if params:
        return dict(params)
    from ..methods.base import tuning_mode
    from ..models.loading import model_kind, model_spec, resolve_weights

    kind = model_kind(resolve_weights(recipe.model.name), model_spec(recipe.model.name))
    mode = tuning_mode(recipe.method, kind)
    return {k: SweepRange.model_validate(v) if isinstance(v, dict) else v for k, v in DEFAULT_SPACES[mode].items()}


def objective_metric(recipe: Recipe) -> tuple[str, str]:
    """(validation metric, 'minimize' | 'maximize')."""
    metric = (recipe.sweep.metric if recipe.sweep else None) or DEFAULT_METRICS.get(task_kind(recipe), "loss")
    return metric, "minimize" if metric in LOWER_IS_BETTER else "maximize"


def suggest(trial, space: dict) -> dict:
    """Optuna's values for every searched key (ranges as ints when both ends are ints)."""
    values = {}
    for key, spec in space.items():
        if isinstance(spec, SweepRange):
            if spec.integer:
                values[key] = trial.suggest_int(key, spec.low, spec.high, log=spec.log)
            else:
                values[key] = trial.suggest_float(key, float(spec.low), float(spec.high), log=spec.log)
        else:
            values[key] = trial.suggest_categorical(key, spec)
    return values


def trial_recipe(recipe: Recipe, values: dict, keep_test: bool = False) -> Recipe:
    """The recipe with `values` set, one seed, and (unless `keep_test`) no test file: a trial picks by validation
    and never sees the test set."""
    raw = recipe.model_dump(mode="json", exclude_unset=True, exclude={"sweep"})
    raw = copy.deepcopy(raw)
    for key, value in values.items():
        set_dotted(raw, key, value)
    raw.setdefault("train", {})["seeds"] = 1
    raw.setdefault("output", {}).pop("dir", None)
    if not keep_test and raw.get("data"):
        raw["data"].pop("test", None)
    if not keep_test and _loss_judged(recipe):  # answers to the held-out prompts would be most of a trial's time
        raw.setdefault("eval", {})["max_samples"] = 0
    return Recipe.model_validate(raw)


def _loss_judged(recipe: Recipe) -> bool:
    """A supervised generation sweep judged by a metric of the loss, which needs no generated answer."""
    supervised = recipe.method.name == "supervised"  # a recipe always has a method section (default: supervised)
    return task_kind(recipe) == "generation" and supervised and objective_metric(recipe)[0] in ANSWER_FREE
