"""few_shot for decoder LLMs: prompt-based learning. Each example becomes a chat turn whose answer is
the label's verbalizer; LoRA learns from the K examples; the base line is the untuned model
answering the same prompt zero-shot (the options are listed in the system prompt)."""

from __future__ import annotations

from ..data.conversations import Conversations, GenerationData
from ..errors import TunesmithError
from ..log import reader_warnings
from ..recipe import EvalSection, SupervisedMethod
from .base import Plan, with_train_defaults
from .supervised_generation import SupervisedGeneration


def verbalizers(method, labels: list[str]) -> dict[str, str]:
    words = {label: label for label in labels}
    if method.verbalizers:
        unknown = sorted(set(method.verbalizers) - set(labels))
        if unknown:
            raise TunesmithError(
                f"method.verbalizers names label(s) not in the training data: {unknown}. Labels: {labels}."
            )
        words.update(method.verbalizers)
    if len(set(words.values())) < len(words):
        raise TunesmithError("method.verbalizers: two labels share the same answer text; each label needs its own.")
    return words


def to_conversations(split, words: dict[str, str], system: str, source: str) -> Conversations:
    samples = [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
            {"role": "assistant", "content": words[label]},
        ]
        for text, label in zip(split.texts, split.labels)
    ]
    return Conversations(samples, "prompt_response", source)


class FewShotPrompted(SupervisedGeneration):
    """The generation method on the K examples turned into chat turns; a finished run is a generation run."""

    # K examples make an epoch of one or two steps: LoRA needs several passes (best epoch kept by validation loss)
    train_defaults = {"epochs": 10, "batch_size": 8}

    def prepare(self, recipe, data=None) -> Plan:
        from ..data.classification import load_classification

        data = load_classification(recipe.data, recipe.train.seed)
        reader_warnings(data.warnings, recipe.train.data_check)
        words = verbalizers(recipe.method, data.labels)
        system = (
            "Classify the text into exactly one of these categories: "
            + ", ".join(words.values())
            + ". Answer with the category only."
        )
        gen = GenerationData(
            *(
                to_conversations(getattr(data, name), words, system, getattr(data, name).source)
                for name in ("train", "validation", "evaluation")
            ),
            eval_name=data.eval_name,
        )
        as_generation = recipe.model_copy(
            update={
                "task": "generation",
                "method": SupervisedMethod(tuning="lora"),
                "train": with_train_defaults(recipe, self).train,
                "eval": EvalSection(
                    batch_size=recipe.eval.batch_size,
                    max_samples=None,
                    generation_metric="exact_match",
                    max_new_tokens=16,
                ),
            }
        )
        return super().prepare(as_generation, data=gen)
