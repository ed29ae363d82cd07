"""The final task of a staged run, scored for any intermediate model.

Classification: a linear probe (logistic regression on the frozen, mean-pooled body) trained on the
target's training set and scored on its evaluation set, the same probe tunesmith uses as the base-model
baseline. Generation: the answer-token loss and perplexity on the target's evaluation conversations.
"""

from __future__ import annotations

from functools import cached_property

from ..engine.hardware import resolve_precision
from ..models.loading import load_tokenizer, resolve_weights


class Target:
    def __init__(self, recipe):
        self.recipe = recipe
        # a regression target is scored by its own stage only (no probe of intermediate stages yet)
        self.task = recipe.task if recipe.method.name != "domain_adaptation" and recipe.task in ("classification", "generation") else None
        self.probe_kind = {"classification": "linear probe", "generation": "answer-token loss", None: "none"}[self.task]
        self.description = {
            "classification": "a linear probe on the stage's frozen body (logistic regression, target train -> target eval)",
            "generation": "the answer-token loss on the target's evaluation conversations",
            None: "nothing (the final stage is not a task)"}[self.task]

    @cached_property
    def data(self):
        if self.task == "classification":
            from ..data.classification import load_classification
            return load_classification(self.recipe.data, self.recipe.train.seed)
        from ..data.conversations import load_generation
        return load_generation(self.recipe.data, self.recipe.train.seed)

    def train_texts(self) -> list[str]:
        """The target's training inputs without labels (TAPT)."""
        if self.task == "classification":
            return list(self.data.train.texts)
        if self.task == "generation":
            return ["\n".join(m["content"] for m in sample) for sample in self.data.train.samples]
        from ..errors import TunesmithError
        raise TunesmithError("method.task_texts needs a final stage that is a task (classification or generation) to take texts from.")

    def evaluate(self, model_name: str) -> dict:
        if self.task == "classification":
            return self._probe(model_name)
        if self.task == "generation":
            return self._answer_loss(model_name)
        return {}

    def _probe(self, model_name: str) -> dict:
        from ..engine.batching import tokenize
        from ..engine.metrics import linear_probe
        from ..models.loading import load_encoder
        weights, cfg, data = resolve_weights(model_name), self.recipe.train, self.data
        tokenizer = load_tokenizer(weights)
        index = {label: i for i, label in enumerate(data.labels)}
        train_rows, _ = tokenize(tokenizer, data.train.texts, data.train.pairs, cfg.max_length)
        eval_rows, _ = tokenize(tokenizer, data.evaluation.texts, data.evaluation.pairs, cfg.max_length)
        return linear_probe(load_encoder(weights), train_rows, [index[y] for y in data.train.labels], eval_rows,
                            [index[y] for y in data.evaluation.labels], data.labels, self.recipe.eval.batch_size,
                            tokenizer.pad_token_id, resolve_precision(cfg.precision), cfg.seed)

    def _answer_loss(self, model_name: str) -> dict:
        from ..tasks.generation.formatting import encode, ensure_chat_template, learnable
        from ..tasks.generation.generate import validation_loss
        from ..models.loading import load_causal_lm
        weights, cfg = resolve_weights(model_name), self.recipe.train
        tokenizer = load_tokenizer(weights)
        ensure_chat_template(tokenizer)
        rows = learnable(encode(tokenizer, self.data.evaluation.samples, cfg.max_length, getattr(self.recipe.method, "loss_on", "responses")))
        return validation_loss(load_causal_lm(weights), rows, self.recipe.eval.batch_size, tokenizer.pad_token_id)

    def headline(self, metrics: dict) -> str:
        keys = ("accuracy", "f1_macro") if self.task == "classification" else ("loss", "perplexity")
        return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics) or "n/a"
