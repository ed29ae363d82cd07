"""What continual learning needs to know about a task kind: how to read an experience's data, encode it against the
labels seen so far, the loss and the LwF distillation on its outputs, and the one score per experience that fills the
matrix (accuracy, micro-F1, entity F1). The learner (continual.py) is the same for every kind; each kind is a class
here (regression: continual_regression.py) and a line in continual.TASKS.

Labels only ever grow: a new experience's labels are appended after the old ones, so the grown head keeps every old
output unchanged (continual_strategies.grow_head).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from ..engine.batching import tokenize
from ..engine.metrics import classification_metrics, predict_proba
from ..tasks.multilabel import sigmoid_probs

log = logging.getLogger(__name__)


class SingleLabel:
    """One label per text: cross-entropy, softmax distillation, accuracy."""

    name, metric, label_word = "classification", "accuracy", "labels"

    def load(self, data, seed: int):
        from ..data.classification import load_classification

        return load_classification(data, seed)

    def build(self, recipe, weights: str, spec: dict, labels: list[str], kind: str):
        from .supervised import build_model

        return build_model(recipe, weights, spec, labels, kind)

    def start_head(self, learner, rows: list[dict], ids: list) -> None:
        """The first experience's new head starts from a probe where method.head_init asks for it (the rule
        supervised runs use, head_init.probe_wanted); heads that grow later keep their learned rows."""
        from ..models.loading import head_is_fresh
        from .head_init import init_head_from_probe, probe_wanted

        n = len(learner.labels)
        if not probe_wanted(learner.method.head_init, n, len(rows), learner.cfg) or learner.kind == "decoder":
            return
        if not head_is_fresh(learner.weights, learner.labels):
            return
        pad, bs = learner.tokenizer.pad_token_id, learner.recipe.eval.batch_size
        if init_head_from_probe(learner.model, rows, ids, n, bs, pad, learner.precision, learner.cfg.seed) is not None:
            log.info("head: started from a linear probe on the body's features")

    def fitted(self, learner, split):
        """The experience's training split as the model reads it (entity tags: long texts as windows of words)."""
        return split

    def examples(self, split) -> list[tuple]:
        """(example, reservoir key) per training row: replay keeps the same share per key."""
        return [(text, label) for text, label in zip(split.texts, split.labels)]

    def encode(self, tokenizer, examples: list, labels: list[str], cfg, method) -> tuple[list[dict], list | None]:
        index = {label: i for i, label in enumerate(labels)}
        rows, _ = tokenize(tokenizer, [text for text, _ in examples], None, cfg.max_length)
        return rows, [index[label] for _, label in examples]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(
            logits, targets, weight=None if weights is None else weights.to(logits.device)
        )

    def old_outputs(
        self, model, rows: list[dict], n_old: int, batch_size: int, pad_id: int, precision: str
    ) -> torch.Tensor:
        probs = predict_proba(model, rows, batch_size, pad_id, precision)
        return torch.log(torch.as_tensor(probs[:, :n_old]).clamp_min(1e-9))  # log-probs work as logits

    def distill(self, new_logits: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
        from .continual_strategies import distillation_loss

        return distillation_loss(new_logits, old, temperature)

    def validation(self, learner, model, split) -> dict:
        """The metrics the loop picks the best epoch by (default_metric among them)."""
        from ..engine.metrics import evaluate_classifier

        index = {label: i for i, label in enumerate(learner.labels)}
        rows, _ = tokenize(learner.tokenizer, split.texts, None, learner.cfg.max_length)
        return evaluate_classifier(
            model,
            rows,
            [index[y] for y in split.labels],
            learner.labels,
            learner.recipe.eval.batch_size,
            learner.tokenizer.pad_token_id,
            learner.precision,
        )

    default_metric = "f1_macro"

    def predictions(self, model, labels: list[str], tokenizer, split, cfg, batch_size: int, precision: str) -> list:
        rows, _ = tokenize(tokenizer, split.texts, None, cfg.max_length)
        probs = predict_proba(model, rows, batch_size, tokenizer.pad_token_id, precision)
        return [labels[i] for i in probs.argmax(-1)]

    def score(self, predicted: list, split) -> float:
        """Labels the model does not know count as wrong."""
        return sum(p == y for p, y in zip(predicted, split.labels)) / len(predicted)

    def overall(self, predicted: list, gold_splits: list, labels: list[str]) -> dict:
        gold = [y for s in gold_splits for y in s.labels]
        every = labels + sorted(set(gold) - set(labels))
        index = {label: i for i, label in enumerate(every)}
        return classification_metrics([index[y] for y in gold], [index[p] for p in predicted], every)

    def relabel(self, learner, examples: list, data) -> list:
        """The new experience's examples as training sees them (before the head grows; the model is the old one)."""
        return examples

    def base_line(self, learner, chosen: list, datas, weights: str) -> tuple[dict, dict | None]:
        """The supervised run's base line on the run's data: the probe on the frozen base model's mean-pooled
        embeddings, fitted on `chosen` training examples, scored on every evaluation set; and the probe as numbers."""
        from types import SimpleNamespace

        from ..tasks.classification import probe_baseline

        evaluation = [pair for d in datas for pair in self.examples(d.evaluation)]
        enc = {}
        enc["train"], enc["train_ids"] = _encoded(self, learner, chosen)
        enc["evaluation"], enc["evaluation_ids"] = _encoded(self, learner, evaluation)
        pad, labels = learner.tokenizer.pad_token_id, learner.labels
        return probe_baseline(learner.recipe, weights, enc, SimpleNamespace(labels=labels), pad, learner.precision)

    def replayed(self, examples: list, new_labels: list[str]) -> list:
        """Past examples as this experience trains on them (`new_labels`: labels no earlier experience had)."""
        return examples

    def after_learning(self, learner, validations: list) -> dict:
        """Files the predictor needs beside the model (name -> JSON), once an experience is learned."""
        return {}

    def restore(self, model_dir, model) -> None:
        """Read back what after_learning wrote, when an update starts from a saved version (its model built)."""

    def saved_form(self, model):
        """The model as a version is written (regression folds its target scale in for the write)."""
        return contextlib.nullcontext(model)

    def score_model(self, learner, model, labels: list[str], split) -> float:
        bs = learner.recipe.eval.batch_size
        return self.score(
            self.predictions(model, labels, learner.tokenizer, split, learner.cfg, bs, learner.precision), split
        )

    def predictor(self):
        from .supervised import SupervisedClassifier

        return SupervisedClassifier.load_predictor


class _Scored(SingleLabel):
    def validation(self, learner, model, split) -> dict:
        return {self.metric: self.score_model(learner, model, learner.labels, split)}


class MultiLabel(_Scored):
    """A label set per text: BCE summed over labels, sigmoid distillation, micro-F1 at thresholds chosen on the
    validation sets of every experience so far (saved with each version)."""

    name, metric = "multi_label", "f1_micro"
    default_metric = metric

    def __init__(self):
        self.thresholds: dict | None = None  # chosen after each experience; 0.5 before any

    def load(self, data, seed: int):
        from ..data.multilabel import load_multilabel

        return load_multilabel(data, seed)

    def build(self, recipe, weights: str, spec: dict, labels: list[str], kind: str):
        model = super().build(recipe, weights, spec, labels, kind)
        model.config.problem_type = "multi_label_classification"  # its own loss (EWC's Fisher) is then BCE
        return model

    def start_head(self, learner, rows: list[dict], ids: list) -> None:
        """The first head starts as a logistic regression per label unless method.head_init is random, as a
        supervised multi-label run's does (a random head spends a short run learning the label priors)."""
        from .head_init import init_multilabel_head

        if learner.method.head_init == "random" or learner.kind == "decoder":
            return
        pad, bs = learner.tokenizer.pad_token_id, learner.recipe.eval.batch_size
        targets = np.asarray(ids)
        if init_multilabel_head(learner.model, rows, targets, bs, pad, learner.precision, learner.cfg.seed):
            log.info("head: started from a logistic regression per label on the body's features")

    def examples(self, split) -> list[tuple]:
        return [
            ((text, tuple(labels)), "|".join(labels) or "(no label)") for text, labels in zip(split.texts, split.labels)
        ]

    def encode(self, tokenizer, examples: list, labels: list[str], cfg, method) -> tuple[list[dict], list]:
        from ..data.multilabel import multi_hot

        rows, _ = tokenize(tokenizer, [text for (text, _), _ in examples], None, cfg.max_length)
        return rows, multi_hot([list(sets) for (_, sets), _ in examples], labels)

    def loss(self, logits, targets, weights) -> torch.Tensor:
        """Summed over labels, averaged over texts, as supervised multi-label training."""
        from .multilabel import bce_sum

        return bce_sum(logits, targets)

    def old_outputs(self, model, rows, n_old, batch_size, pad_id, precision) -> torch.Tensor:
        probs = np.clip(sigmoid_probs(model, rows, batch_size, pad_id, precision)[:, :n_old], 1e-6, 1 - 1e-6)
        return torch.as_tensor(np.log(probs / (1 - probs)), dtype=torch.float32)  # the old logits

    def distill(self, new_logits, old, temperature: float) -> torch.Tensor:
        """Each old label's softened probability is the target of the new one (summed over labels, T^2-scaled)."""
        t = temperature
        new = new_logits[:, : old.shape[1]].float() / t
        return (
            torch.nn.functional.binary_cross_entropy_with_logits(new, (old.float() / t).sigmoid(), reduction="sum")
            / len(new)
            * t
            * t
        )

    def predictions(self, model, labels, tokenizer, split, cfg, batch_size, precision) -> list:
        rows, _ = tokenize(tokenizer, split.texts, None, cfg.max_length)
        probs = sigmoid_probs(model, rows, batch_size, tokenizer.pad_token_id, precision)
        known = list(self.thresholds["per_label"]) if self.thresholds else []
        cut = np.asarray(
            known[: len(labels)] + [0.5] * (len(labels) - len(known))
        )  # labels new since the last choice: 0.5
        return [[label for label, on in zip(labels, row) if on] for row in probs >= cut]

    def score(self, predicted, split) -> float:
        """Micro-F1 over label assignments; labels the model does not know count as missed."""
        tp = sum(len(set(p) & set(g)) for p, g in zip(predicted, split.labels))
        wrong = sum(len(set(p) ^ set(g)) for p, g in zip(predicted, split.labels))
        return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0

    def overall(self, predicted, gold_splits, labels) -> dict:
        from ..data.multilabel import multi_hot
        from ..tasks.multilabel import multilabel_metrics

        gold = [row for s in gold_splits for row in s.labels]
        every = labels + sorted({label for row in gold for label in row} - set(labels))
        return multilabel_metrics(np.asarray(multi_hot(gold, every)), np.asarray(multi_hot(predicted, every)), every)

    def base_line(self, learner, chosen: list, datas, weights: str) -> tuple[dict, dict | None]:
        """One logistic regression per label on the frozen base model's mean-pooled embeddings, thresholds chosen
        on every experience's validation set, as a supervised multi-label run's base line."""
        from ..tasks.multilabel import ovr_baseline

        splits = {
            "train": chosen,
            "validation": [pair for d in datas for pair in self.examples(d.validation)],
            "evaluation": [pair for d in datas for pair in self.examples(d.evaluation)],
        }
        rows, targets = {}, {}
        for name, pairs in splits.items():
            rows[name], targets[name] = _encoded(self, learner, pairs)
        pad = learner.tokenizer.pad_token_id
        return ovr_baseline(learner.recipe, weights, rows, targets, learner.labels, pad, learner.precision)

    def after_learning(self, learner, validations: list) -> dict:
        """Thresholds chosen on the validation sets of every experience learned so far (old labels' positives are in
        old data); returned as the file the predictor reads beside the model."""
        from ..data.multilabel import multi_hot
        from ..tasks.multilabel import choose_thresholds

        rows, _ = tokenize(learner.tokenizer, [t for s in validations for t in s.texts], None, learner.cfg.max_length)
        probs = sigmoid_probs(
            learner.model, rows, learner.recipe.eval.batch_size, learner.tokenizer.pad_token_id, learner.precision
        )
        gold = multi_hot(
            [[y for y in row if y in learner.labels] for s in validations for row in s.labels], learner.labels
        )
        self.thresholds = choose_thresholds(np.asarray(gold), probs)
        separator = next((d.label_separator for d in learner.data_sections if d is not None), None)
        return {"thresholds.json": {"labels": learner.labels, **self.thresholds, "separator": separator}}

    def restore(self, model_dir, model) -> None:
        from ..runs import rundir

        self.thresholds = rundir.read_json(model_dir / "thresholds.json")

    def predictor(self):
        from .multilabel import SupervisedMultiLabel

        return SupervisedMultiLabel.load_predictor


class TokenTags(_Scored):
    """Entity tags per word: new entity types arriving are new tags (class-incremental). Cross-entropy on each
    word's first piece; entity F1 (seqeval). LwF is not offered: it would distil every token's old-tag
    distribution, and on new data whose old entities are tagged O it teaches the model to forget them."""

    name, metric, label_word = "token_classification", "f1", "tags"
    default_metric = metric

    def load(self, data, seed: int):
        from ..data.token_files import load_tokens

        return load_tokens(data, seed)

    def build(self, recipe, weights, spec, labels, kind):
        from ..models.loading import freeze_bottom
        from .token_classification import load_token_model, token_freezing

        model = load_token_model(weights, labels, recipe.train)
        freeze_bottom(model, *token_freezing(recipe.method))
        return model

    def start_head(self, learner, rows: list[dict], ids) -> None:
        """The first experience's tag head starts as the per-token probe on the body's word vectors where
        method.head_init asks for it (the rule supervised tag runs use)."""
        from ..models.loading import fill_head, saved_tags
        from ..tasks.token_classification import fitted_head
        from .head_init import PROBE_BELOW_STEPS_PER_TAG, probe_wanted

        labels, cfg = learner.labels, learner.cfg
        if not probe_wanted(learner.method.head_init, len(labels), len(rows), cfg, PROBE_BELOW_STEPS_PER_TAG):
            return
        if saved_tags(learner.weights) == labels:
            return
        firsts = [[i for i, y in enumerate(row["labels"]) if y != -100] for row in rows]  # the words that carry a tag
        tags = [[labels[row["labels"][i]] for i in first] for row, first in zip(rows, firsts)]
        model, pad, bs = learner.model, learner.tokenizer.pad_token_id, learner.recipe.eval.batch_size
        if fill_head(
            model, *fitted_head(model.base_model, rows, firsts, tags, labels, bs, pad, learner.precision, cfg.seed)
        ):
            log.info("tag head: started from the per-token probe on the body's word vectors")
        model.train()

    def fitted(self, learner, split):
        """Texts longer than max_length as the overlapping windows of words that tag them in predictions, so the
        entities past the first window train too (as in supervised runs)."""
        from ..tasks.token_classification import encode, split_long

        _, firsts, cut = encode(learner.tokenizer, split.tokens, None, [], learner.cfg.max_length)
        if not cut:
            return split
        windows, _, _ = split_long(learner.tokenizer, split, firsts, learner.cfg.max_length)
        log.info(f"{cut} training texts exceed train.max_length: they train as {len(windows)} windows of words in all")
        return windows

    def examples(self, split) -> list[tuple]:
        return [((tuple(words), tuple(tags)), _type_key(tags)) for words, tags in zip(split.tokens, split.tags)]

    def encode(self, tokenizer, examples, labels, cfg, method) -> tuple[list[dict], None]:
        from ..tasks.token_classification import encode

        rows, _, _ = encode(
            tokenizer,
            [list(w) for (w, _), _ in examples],
            [list(t) for (_, t), _ in examples],
            labels,
            cfg.max_length,
            method.label_all_subtokens,
        )
        return rows, None  # the tags live in the rows

    def loss(self, logits, targets, weights) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def relabel(self, learner, examples: list, data) -> list:
        """New data annotated for new entity types tags the old types' mentions O; trained as they are, they teach
        the model to forget those types (the background shift of class-incremental NER). Where the new data does
        not annotate an old type at all, the old model's tags for that type replace O (pseudo-labels, as in
        Zhang et al. 2023, CPFD / Monaikul et al. 2021). Types the new data does annotate keep their gold O."""
        from ..data.tokens import TaggedSplit

        old_types = {t[2:] for t in learner.labels if t != "O"}
        missing = old_types - {t[2:] for t in data.labels if t != "O"}
        if learner.model is None or not missing:
            return examples
        split = TaggedSplit([list(w) for (w, _), _ in examples], [list(t) for (_, t), _ in examples])
        predicted = self.predictions(
            learner.model,
            learner.labels,
            learner.tokenizer,
            split,
            learner.cfg,
            learner.recipe.eval.batch_size,
            learner.precision,
        )
        out, added = [], 0
        for ((words, tags), _), guess in zip(examples, predicted):
            new = [p if g == "O" and p != "O" and p[2:] in missing else g for g, p in zip(tags, guess)]
            added += sum(n.startswith("B-") and g == "O" for n, g in zip(new, tags))
            out.append(((tuple(words), tuple(new)), _type_key(new)))
        log.info(f"pseudo-labels: {added} mention(s) of {sorted(missing)} found by the previous model in the new data")
        return out

    def base_line(self, learner, chosen: list, datas, weights: str) -> tuple[dict, dict | None]:
        """The supervised tag run's base line: a logistic regression per token on the frozen base model's word
        vectors, fitted on `chosen` sentences; as the base model's tag head it is scored the way the versions are
        (long texts in windows, each set on the types it annotates)."""
        from ..models.loading import fill_head, load_token_classifier
        from ..tasks.token_classification import encode, fitted_head, head_numbers

        cfg, labels, tokenizer = learner.cfg, learner.labels, learner.tokenizer
        pad, bs, precision = tokenizer.pad_token_id, learner.recipe.eval.batch_size, learner.precision
        rows, firsts, _ = encode(tokenizer, [list(w) for (w, _), _ in chosen], None, [], cfg.max_length)
        model = load_token_classifier(weights, labels)  # the pre-trained body; the probe becomes its tag head
        tags = [list(t) for (_, t), _ in chosen]
        weight, bias = fitted_head(model.base_model, rows, firsts, tags, labels, bs, pad, precision, cfg.seed)
        if not fill_head(model, weight, bias):
            return {}, None
        splits = [d.evaluation for d in datas]
        predicted = [p for s in splits for p in self.predictions(model, labels, tokenizer, s, cfg, bs, precision)]
        base = self.overall(predicted, splits, labels)
        log.info(f"base: entity F1 {base['f1']:.4f} (precision {base['precision']:.4f}, recall {base['recall']:.4f})")
        kind = "logistic regression per token on the frozen base model's token embeddings"
        return {"kind": kind, **base}, head_numbers(labels, weight, bias)

    def old_outputs(self, *args) -> torch.Tensor:
        raise AssertionError("LwF is refused for token classification before training starts")

    def replayed(self, examples: list, new_labels: list[str]) -> list:
        """Past sentences were never annotated for the entity types new in this experience: their O words say
        nothing about those, so they carry no loss (None); their old entities are trained as they are."""
        if not [t for t in new_labels if t != "O"]:
            return examples
        return [((words, tuple(None if t == "O" else t for t in tags)), key) for (words, tags), key in examples]

    def predictions(self, model, labels, tokenizer, split, cfg, batch_size, precision) -> list:
        from ..tasks.token_classification import sentence_scores, tags_of

        scores = sentence_scores(model, tokenizer, split.tokens, labels, cfg.max_length, batch_size, precision)
        return tags_of(scores, labels)

    def score(self, predicted, split) -> float:
        from ..tasks.token_classification import ner_metrics

        return ner_metrics(split.tags, _annotated_only(predicted, split), detail=False)["f1"]

    def overall(self, predicted, gold_splits, labels) -> dict:
        from ..tasks.token_classification import ner_metrics

        restricted, start = [], 0
        for split in gold_splits:
            restricted += _annotated_only(predicted[start : start + len(split)], split)
            start += len(split)
        return ner_metrics([row for s in gold_splits for row in s.tags], restricted)

    def predictor(self):
        from .token_classification import SupervisedTokenClassifier

        return SupervisedTokenClassifier.load_predictor


def _annotated_only(predicted: list, split) -> list:
    """Each experience's set is scored on the entity types it annotates: a set labelled for PRAISE tags the
    movies in it O, and a model that has also learned ITEM must not lose precision for finding them."""
    types = {t[2:] for row in split.tags for t in row if t != "O"}
    return [[t if t == "O" or t[2:] in types else "O" for t in row] for row in predicted]


def _type_key(tags) -> str:
    """The replay reservoir's class of a sentence: the entity types it holds."""
    return "|".join(sorted({t[2:] for t in tags if t != "O"})) or "O"


def _encoded(task, learner, pairs: list) -> tuple[list[dict], list]:
    """(example, key) pairs as the task encodes them for training."""
    return task.encode(learner.tokenizer, pairs, learner.labels, learner.cfg, learner.method)
