"""Use a finished run: Predictor.load(run_dir).predict(texts) -> the user's label names.

A finished run knows how to predict itself: `load` asks the method that trained it (the registry entry
its metrics name), never which files happen to exist.
"""

from __future__ import annotations

from pathlib import Path

from .methods import method_class
from .runs import rundir
from .tasks.classification import ClassifierPredictor


class Predictor(ClassifierPredictor):
    """scikit-learn-shaped: `classes_`, `predict`, `predict_proba`, `evaluate(file)`. `Predictor.load` gives
    the predictor of any finished run: this class for classifiers, a GenerativePredictor (`.generate`,
    `.stream`) for generation runs."""

    @classmethod
    def load(cls, run_dir: str | Path, **kwargs):
        run_dir, name, task, kind, recipe = identify(run_dir)
        kwargs.setdefault("max_length", recipe.get("train", {}).get("max_length", 256))
        return method_class(name, task, kind).load_predictor(run_dir, columns=recipe_columns(run_dir), **kwargs)


def load_base(run_dir: str | Path):
    """The model a finished run started from, answering the same way: the base LLM for generation runs, the
    base encoder with the run's linear base line (probe, per-token probe, ridge, one regression per label) for
    the supervised runs that kept one. None where there is none."""
    run_dir, _, task, _, recipe = identify(run_dir)
    if task == "generation":
        from .tasks.generation.predictor import load_base_predictor

        return load_base_predictor(run_dir)
    if task == "token_classification":
        from .tasks.token_classification import load_base_predictor
    elif task == "regression":
        from .tasks.regression import load_base_predictor
    elif task == "multi_label":
        from .tasks.multilabel import load_base_predictor
    else:
        from .tasks.classification import load_base_predictor

    max_length = recipe.get("train", {}).get("max_length", 256)
    return load_base_predictor(run_dir, recipe_columns(run_dir), max_length if isinstance(max_length, int) else 256)


def identify(run_dir: str | Path) -> tuple[Path, str, str, str | None, dict]:
    """(the run directory holding the model, method name, task, model kind, recipe) of a finished run,
    read from what the run recorded, before any model is loaded. A multi-seed run points at its first seed."""
    run_dir = rundir.open_finished(run_dir)
    metrics = rundir.read_json(run_dir / rundir.METRICS_FILE)
    if metrics.get("model_dir"):
        run_dir = rundir.open_finished(run_dir / metrics["model_dir"])
        metrics = rundir.read_json(run_dir / rundir.METRICS_FILE)
    recipe = run_recipe(run_dir)
    method = (
        recipe.get("method")
        if isinstance(recipe.get("method"), dict)
        else {"name": recipe.get("method") or "supervised"}
    )
    name = metrics.get("method") or method.get("name", "supervised")
    return (
        run_dir,
        name,
        metrics.get("task") or recipe.get("task") or "classification",
        metrics.get("model_kind"),
        recipe,
    )


def run_task(run_dir: str | Path) -> str:
    """classification | generation | domain_adaptation: what a finished run's model does."""
    return identify(run_dir)[2]


def run_recipe(run_dir: Path) -> dict:
    """The run's recipe; for a staged run, its last stage (whose model the run directory holds)."""
    raw = rundir.read_yaml(run_dir / rundir.RECIPE_FILE)
    if raw.get("stages"):
        from .recipe import load_recipe, stage_recipe

        raw = stage_recipe(load_recipe(raw), len(raw["stages"]) - 1).model_dump(mode="json")
    return raw


def recipe_columns(run_dir: Path) -> dict:
    data = run_recipe(run_dir).get("data") or {}
    return {
        "text": data.get("text_column", "text"),
        "label": data.get("label_column", "label"),
        "pair": data.get("text_pair_column"),
    }
