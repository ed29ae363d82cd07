"""Supervised classification: a pretrained body plus a new head, full fine-tuning or LoRA."""

from __future__ import annotations

from collections import Counter

import torch

from ..models.loading import apply_lora, freeze_bottom, load_classifier, set_dropout
from ..recipe import LoraSection
from ..engine.loop import Hooks


def build_model(recipe, weights: str, spec: dict, labels: list[str], kind: str):
    model = load_classifier(weights, labels)
    if recipe.train.dropout is not None:
        set_dropout(model, recipe.train.dropout)
    if training_mode(recipe, kind) == "lora":
        return apply_lora(model, recipe.method.lora or LoraSection(), spec)
    freeze_bottom(model, recipe.method.freeze_embeddings, recipe.method.freeze_layers)
    return model


def training_mode(recipe, kind: str) -> str:
    """full | lora. 'auto': LoRA for decoders (a few MB of adapters instead of the whole model) or when a
    lora section is given; full fine-tuning for encoders, which are small enough to train whole."""
    tuning = recipe.method.tuning
    if tuning != "auto":
        return tuning
    return "lora" if recipe.method.lora is not None or kind == "decoder" else "full"


def class_weight_tensor(setting, labels: list[str], train_labels: list[str]) -> torch.Tensor | None:
    """'balanced' = n / (k * count_c), as in scikit-learn; a dict gives weights by label name."""
    if setting == "none":
        return None
    if setting == "balanced":
        counts = Counter(train_labels)
        n, k = len(train_labels), len(labels)
        return torch.tensor([n / (k * counts[label]) for label in labels], dtype=torch.float32)
    unknown = set(setting) - set(labels)
    if unknown:
        from ..errors import TunesmithError
        raise TunesmithError(f"method.class_weights names label(s) not in the training data: {sorted(unknown)}. Labels: {labels}.")
    return torch.tensor([float(setting.get(label, 1.0)) for label in labels], dtype=torch.float32)


def make_hooks(recipe, labels: list[str], train_labels: list[str], evaluate) -> Hooks:
    weights = class_weight_tensor(recipe.method.class_weights, labels, train_labels)
    if weights is None:
        return Hooks(evaluate=evaluate)

    def weighted_loss(model, batch):
        targets = batch.pop("labels")
        logits = model(**batch).logits.float()
        return torch.nn.functional.cross_entropy(logits, targets, weight=weights.to(logits.device))

    return Hooks(evaluate=evaluate, compute_loss=weighted_loss)
