"""The only place a recipe's names map to code: method name -> task -> (model kind ->) the method.

Adding a method or a task kind: its module here, its schema class in recipe.py, and its line below.
"""

from __future__ import annotations

from ..recipe import task_kind
from .continual import Continual
from .domain_adaptation import DomainAdaptation
from .few_shot import FewShotContrastive
from .few_shot_multilabel import FewShotMultiLabel
from .few_shot_prompted import FewShotPrompted
from .multilabel import SupervisedMultiLabel
from .preference import PreferenceTuning
from .regression import SupervisedRegressor
from .supervised import SupervisedClassifier
from .supervised_generation import SupervisedGeneration
from .token_classification import SupervisedTokenClassifier

METHODS: dict[str, dict] = {
    "supervised": {
        "classification": SupervisedClassifier,
        "multi_label": SupervisedMultiLabel,
        "regression": SupervisedRegressor,
        "token_classification": SupervisedTokenClassifier,
        "generation": SupervisedGeneration,
    },
    "few_shot": {
        "classification": {"encoder": FewShotContrastive, "decoder": FewShotPrompted},
        "multi_label": FewShotMultiLabel,
    },
    # continued pre-training does not depend on the task that follows it
    "domain_adaptation": {
        task: DomainAdaptation
        for task in (
            "classification",
            "multi_label",
            "regression",
            "token_classification",
            "generation",
            "domain_adaptation",
        )
    },
    "preference": {"generation": PreferenceTuning},
    "continual": {task: Continual for task in ("classification", "multi_label", "regression", "token_classification")},
}


def method_class(name: str, task: str, kind: str | None = None):
    """The class registered for (method, task[, model kind]); a clear error for a pair that does not exist."""
    from ..errors import TunesmithError

    by_task = METHODS.get(name, {})
    entry = by_task.get(task)
    if entry is None:
        raise TunesmithError(f"method {name!r} does not do task {task!r}; it does: {', '.join(by_task) or 'nothing'}.")
    if isinstance(entry, dict):
        entry = entry[kind or "encoder"]
    return entry


def method_for(recipe, **options):
    """The method object that runs this (single, unstaged) recipe."""
    from ..models.loading import model_kind, model_spec, resolve_weights

    task = task_kind(recipe)
    by_task = METHODS.get(recipe.method.name, {}).get(task)
    kind = (
        model_kind(resolve_weights(recipe.model.name), model_spec(recipe.model.name))
        if isinstance(by_task, dict)
        else None
    )
    return method_class(recipe.method.name, task, kind)(**options)


def train_defaults() -> list[tuple[str, str, str, dict]]:
    """(method, task, model kind or "", defaults) of every registered method that declares its own train defaults."""
    rows = []
    for name, by_task in METHODS.items():
        for task, entry in by_task.items():
            for kind, cls in entry.items() if isinstance(entry, dict) else [("", entry)]:
                if getattr(cls, "train_defaults", None):
                    rows.append((name, task, kind, cls.train_defaults))
    return rows
