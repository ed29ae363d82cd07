"""Use a finished run: Predictor.load(run_dir).predict(texts) -> the user's label names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runs import rundir as runs
from .engine.batching import tokenize
from .engine.metrics import predict_proba
from .engine.hardware import resolve_precision


class Predictor:
    """scikit-learn-shaped: `classes_`, `predict`, `predict_proba`."""

    def __init__(self, model, tokenizer, max_length: int = 256, batch_size: int = 64, precision: str = "auto", head: dict | None = None):
        self.model, self.tokenizer, self.head = model.eval(), tokenizer, head
        # few_shot runs: an embedding body plus a logistic head saved as numbers; else a HF classifier
        self.classes_ = head["labels"] if head else [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length, self.batch_size = max_length, batch_size
        self.precision = resolve_precision(precision)

    @classmethod
    def load(cls, run_dir: str | Path, **kwargs):
        """A Predictor for classification runs; a GenerativePredictor (`.generate`) for generation runs."""
        from transformers import AutoModelForSequenceClassification
        from .models.loading import load_tokenizer
        run_dir = runs.open_finished(run_dir)
        model_dir = runs.read_json(run_dir / runs.METRICS_FILE).get("model_dir")
        if model_dir:  # a multi-seed run: use the seed run it names
            run_dir = runs.open_finished(run_dir / model_dir)
        if is_generation_run(run_dir):
            from .tasks.generation.predictor import GenerativePredictor, load_generation_model
            return GenerativePredictor(*load_generation_model(run_dir), **kwargs)
        model_dir = run_dir / runs.MODEL_DIR
        recipe = _recipe(run_dir)
        kwargs.setdefault("max_length", recipe.get("train", {}).get("max_length", 256))
        from .methods.few_shot import load_head
        head = load_head(model_dir)
        tokenizer = runs.load_saved_model(model_dir, load_tokenizer)
        if head:
            from .models.loading import load_encoder
            return cls(runs.load_saved_model(model_dir, load_encoder), tokenizer, head=head, **kwargs)
        model = runs.load_saved_model(model_dir, lambda path: AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, use_safetensors=True))  # a run writes safetensors; a .bin there is not ours
        return cls(model, tokenizer, **kwargs)

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        rows, _ = tokenize(self.tokenizer, list(texts), pairs, self.max_length)
        if self.head:
            from .engine.metrics import forward_batches, mean_pooled
            from .methods.few_shot import head_proba
            x = forward_batches(self.model, rows, self.batch_size, self.tokenizer.pad_token_id, self.precision, mean_pooled)
            return head_proba(self.head, x)
        return predict_proba(self.model, rows, self.batch_size, self.tokenizer.pad_token_id, self.precision)

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(texts, pairs).argmax(-1)]


def is_generation_run(run_dir: Path) -> bool:
    return _recipe(run_dir).get("task") == "generation"


def _recipe(run_dir: Path) -> dict:
    """The run's recipe; for a staged run, its last stage (whose model the run directory holds)."""
    raw = runs.read_yaml(run_dir / runs.RECIPE_FILE)
    if raw.get("stages"):
        from .recipe import load_recipe, stage_recipe
        raw = stage_recipe(load_recipe(raw), len(raw["stages"]) - 1).model_dump(mode="json")
    return raw


def recipe_columns(run_dir: Path) -> dict:
    data = _recipe(run_dir).get("data", {})
    return {"text": data.get("text_column", "text"), "label": data.get("label_column", "label"),
            "pair": data.get("text_pair_column")}

