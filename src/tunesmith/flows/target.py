"""The final task of a staged run, scored for any intermediate model.

Encoder tasks (classification, multi-label, regression, entities): the task's own base-line probe on the
stage's frozen body (logistic regression per class or per label, ridge regression, logistic regression per
word), trained on the target's training set and scored on its evaluation set, exactly as tunesmith scores a
base model. Generation: the answer-token loss and perplexity on the target's evaluation conversations.
"""

from __future__ import annotations

from functools import cached_property

from ..models.loading import load_tokenizer, resolve_weights
from ..recipe import task_kind

PROBES = {  # task kind -> (what the probe is, the figures the console shows)
    "classification": ("linear probe", ("accuracy", "f1_macro")),
    "multi_label": ("one-vs-rest probe", ("f1_micro", "f1_macro")),
    "regression": ("ridge probe", ("spearman", "pearson")),
    "token_classification": ("per-word probe", ("f1", "precision", "recall")),
    "generation": ("answer-token loss", ("loss", "perplexity")),
}


class Target:
    def __init__(self, recipe):
        self.recipe, self.last_head = recipe, None
        self.task = (
            task_kind(recipe)
            if recipe.method.name != "domain_adaptation"
            and recipe.task in ("classification", "generation", "regression", "token_classification")
            else None
        )
        self.probe_kind = PROBES[self.task][0] if self.task else "none"
        self.description = {
            None: "nothing (the final stage is not a task)",
            "generation": "the answer-token loss on the target's evaluation conversations",
        }.get(self.task, f"the task's {self.probe_kind} on the stage's frozen body (target train -> target eval)")

    @cached_property
    def data(self):
        if self.task == "generation":
            from ..data.conversations import load_generation

            return load_generation(self.recipe.data, self.recipe.train.seed)
        from ..methods import method_class

        return method_class("supervised", self.task)().prepare(self._supervised(self.recipe.model.name)).data

    def train_texts(self) -> list[str]:
        """The target's training inputs without labels (TAPT)."""
        if self.task == "generation":
            return ["\n".join(m["content"] for m in sample) for sample in self.data.train.samples]
        if self.task == "token_classification":
            return [" ".join(words) for words in self.data.train.tokens]
        if self.task:
            return list(self.data.train.texts)
        from ..errors import TunesmithError

        raise TunesmithError(
            "method.task_texts needs a final stage that is a task (classification, regression, entities or "
            "generation) to take texts from."
        )

    def evaluate(self, model_name: str) -> dict:
        if self.task == "generation":
            return self._answer_loss(model_name)
        if self.task:
            return self._probe(model_name)
        return {}

    def _supervised(self, model_name: str):
        """The target recipe as a plain supervised run of `model_name`, its probe switched on."""
        from ..recipe import SupervisedMethod

        return self.recipe.model_copy(
            update={
                "model": self.recipe.model.model_copy(update={"name": model_name}),
                "method": SupervisedMethod.model_validate({"name": "supervised"}),
                "eval": self.recipe.eval.model_copy(update={"baseline": "linear_probe"}),
            }
        )

    def _probe(self, model_name: str) -> dict:
        """The task's own base line (methods' `baseline`) with the stage's model as the base; the probe itself, as
        numbers, is kept in `last_head` (a staged run keeps the base model's as its base_head.json)."""
        from ..engine.hardware import resolve_precision
        from ..methods import method_class
        from ..methods.base import Context

        method = method_class("supervised", self.task)()
        plan = method.prepare(self._supervised(model_name))
        scores = method.baseline(plan, Context(None, resolve_precision(self.recipe.train.precision), None), None)
        self.last_head = plan.extra.get("base_head")
        return scores

    def _answer_loss(self, model_name: str) -> dict:
        from ..models.loading import load_causal_lm
        from ..tasks.generation.formatting import auto_length, encode, ensure_chat_template, learnable
        from ..tasks.generation.generate import validation_loss

        weights = resolve_weights(model_name)
        tokenizer = load_tokenizer(weights)
        ensure_chat_template(tokenizer, self.recipe.model.chat_template)
        cfg = auto_length(self.recipe, tokenizer, self.data.train.samples)[
            0
        ].train  # the limit the target's training uses
        rows = learnable(
            encode(
                tokenizer,
                self.data.evaluation.samples,
                cfg.max_length,
                getattr(self.recipe.method, "loss_on", "responses"),
            )
        )
        return validation_loss(load_causal_lm(weights), rows, self.recipe.eval.batch_size, tokenizer.pad_token_id)

    def headline(self, metrics: dict) -> str:
        keys = PROBES[self.task][1] if self.task else ()
        return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float)) or "n/a"
