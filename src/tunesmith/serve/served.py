"""A finished run as the server holds it: its predictor (or its base model), what it does, its version, the
batchers that group its requests, and how a classification answer is shaped. The routes (app.py) and the
dashboard's playground answer through these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TunesmithError
from ..predict import Predictor, identify, load_base
from .batching import Batcher
from .versions import run_version


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_inputs: int = 256  # texts per /v1/classify request
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024  # new tokens per completion
    max_batch: int = 32
    max_wait_s: float = 0.02  # the longest a request waits for companions
    max_gap_s: float = 0.002  # ...or until none has come for this long (classify; see Batcher)


MAX_BATCHERS = 32  # request settings with a queue of their own, per model


class Served:
    """One run behind the API: its predictor, what it does, and the batcher that groups its requests."""

    def __init__(
        self,
        name: str,
        run_dir: Path,
        limits: Limits,
        quantize: str | None = None,
        base: bool = False,
        drift: bool = False,
    ):
        """`base`: the model the run started from instead (predict.load_base; the dashboard's playground)."""
        self.run_dir, self.version = Path(run_dir), run_version(Path(run_dir))
        run_dir, method, task, _, recipe = identify(run_dir)
        self.name, self.task, self.method = name, task, method
        self.base_model = (
            (recipe.get("model") or {}).get("name") if isinstance(recipe.get("model"), dict) else recipe.get("model")
        )
        self.predictor = load_base(run_dir) if base else Predictor.load(run_dir)
        if self.predictor is None:
            raise TunesmithError(f"{run_dir} kept no base model to answer with (eval.baseline: none?).")
        self.generative = hasattr(self.predictor, "generate")
        self.quantized = quantize if quantize and not self.generative else None  # generation keeps its weights
        if self.quantized:
            from .quantize import quantize_predictor

            quantize_predictor(self.predictor, quantize)
        self.batchers: dict = {}
        self.limits = limits
        self.observe = None  # called with each batched call's size (the server's /metrics)
        self.reference = None  # where the training texts lie (serve/drift.py): single-label classifiers
        if drift and hasattr(self.predictor, "proba_and_embedding") and not hasattr(self.predictor, "thresholds"):
            from .drift import Reference

            self.reference = Reference.build(self.predictor, self.run_dir)

    def batcher(self, key, work) -> Batcher:
        if key not in self.batchers:
            if (
                len(self.batchers) >= MAX_BATCHERS
            ):  # every distinct temperature/top_p/max_tokens makes one: never unbounded
                for old in [k for k, b in self.batchers.items() if b.idle()]:
                    self.batchers.pop(old).stop()
            # a generation lasts seconds: waiting 50 ms for companions costs nothing and lets streams share a batch
            wait = max(self.limits.max_wait_s, 0.05) if self.generative else self.limits.max_wait_s
            gap = None if self.generative else self.limits.max_gap_s
            self.batchers[key] = Batcher(
                work, self.limits.max_batch, wait, gap, retry_alone=key[0] != "stream", observe=self.observe
            )
        return self.batchers[key]

    def card(self) -> dict:
        return {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": "tunesmith",
            "task": self.task,
            "method": self.method,
            "base_model": self.base_model,
            "quantized": self.quantized,
            "version": self.version,
        }


def classify_items(predictor, items: list, reference=None) -> list[dict]:
    """Per text: label scores (classifier, multi-label: each label's probability) or a value (regression).
    With a drift `reference` (single-label classifiers), each row also says whether the text is far from the
    training texts, from the same forward pass."""
    if reference is not None and items and not isinstance(items[0], tuple):
        probs, embeddings = predictor.proba_and_embedding(items)
        far = reference.far(probs, embeddings)
        return [{"probs": dict(zip(predictor.classes_, map(float, row))), "far": bool(f)} for row, f in zip(probs, far)]
    if items and isinstance(items[0], tuple):  # a run trained on text pairs
        texts, pairs = [a for a, _ in items], [b for _, b in items]
        if not hasattr(predictor, "predict_proba"):
            return [{"value": float(v)} for v in predictor.predict(texts, pairs)]
        return [
            {"probs": dict(zip(predictor.classes_, map(float, row)))} for row in predictor.predict_proba(texts, pairs)
        ]
    texts = items
    if hasattr(predictor, "predict_tags"):  # token classification: the entities found in each text
        return [{"entities": found} for found in predictor.predict(texts)]
    if not hasattr(predictor, "predict_proba"):
        return [{"value": float(v)} for v in predictor.predict(texts)]
    probs = predictor.predict_proba(texts)
    if hasattr(predictor, "thresholds"):
        on = probs >= np.asarray(
            predictor.thresholds["per_label"]
        )  # the saved per-label thresholds, on the batch's probabilities
        chosen = [[label for label, hit in zip(predictor.classes_, row) if hit] for row in on]
        return [
            {"labels": labels, "probs": dict(zip(predictor.classes_, map(float, row)))}
            for labels, row in zip(chosen, probs)
        ]
    return [{"probs": dict(zip(predictor.classes_, map(float, row)))} for row in probs]


def top_labels(row: dict, k: int) -> dict:
    if "value" in row or "entities" in row:
        return row
    ranked = sorted(row["probs"].items(), key=lambda item: -item[1])
    out = {
        "label": ranked[0][0],
        "score": ranked[0][1],
        "top": [{"label": label, "score": p} for label, p in ranked[:k]],
    }
    if "labels" in row:
        out["labels"] = row["labels"]
    if "far" in row:
        out["far_from_training"] = row["far"]
    return out
