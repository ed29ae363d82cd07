"""Texts with a set of labels each (a clause that is both a liability cap and a unilateral change; a comment
with two emotions): lists in JSONL/Parquet cells, lists written into CSV cells (as JSON, or as pandas writes a
Python list), or strings split on data.label_separator."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import TunesmithError, did_you_mean
from .columns import label_sets, read_columns, take


@dataclass
class MultiLabelSplit:
    texts: Sequence[str]  # a memory-mapped column of the file's table, or a list
    labels: list[list[str]]  # each row's label set (may be empty: "no label"); rows with one set share its list
    pairs: Sequence[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class MultiLabelData:
    train: MultiLabelSplit
    validation: MultiLabelSplit
    evaluation: MultiLabelSplit  # test if given, else validation
    labels: list[str]
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def read_multilabel(path: str, data, role: str) -> MultiLabelSplit:
    """The file's texts (memory-mapped columns, read in chunks and cached: any size) and label sets."""
    read = read_columns(
        path,
        role,
        {"text": data.text_column, "pair": data.text_pair_column, "labels": data.label_column},
        data.filter,
        separator=data.label_separator,
    )
    return MultiLabelSplit(read.columns["text"], read.label_sets, read.columns.get("pair"), source=path)


def load_multilabel(data, seed: int) -> MultiLabelData:
    train = read_multilabel(data.train, data, "data.train")
    if data.validation:
        validation = read_multilabel(data.validation, data, "data.validation")
    else:
        train, validation = _random_split(train, data.validation_split, seed)
    if data.max_train_samples and data.max_train_samples < len(train):
        train = _take(train, sorted(random.Random(seed).sample(range(len(train)), data.max_train_samples)))
    if data.samples_per_class:
        train = sample_per_label(train, data.samples_per_class, seed)
    counts = Counter(label for row in train.labels for label in row)
    if len(counts) < 2:
        raise TunesmithError(
            f"{data.train}: multi-label classification needs at least two labels in the training data; "
            f"found {sorted(counts) or 'none'}. Check data.label_separator ({data.label_separator!r})."
        )
    labels = sorted(counts)
    test = read_multilabel(data.test, data, "data.test") if data.test else None
    rare = sorted(label for label, n in counts.items() if n < data.min_examples_per_class)
    warnings = (
        [f"{data.train}: label(s) {rare[:10]} have fewer than {data.min_examples_per_class} training examples."]
        if rare
        else []
    )
    for split in (validation, test):
        unseen = sorted({label for row in (split.labels if split else []) for label in row} - set(labels))
        if unseen:  # one rare label must not stop a 28-label run: it is left out of the scores, and said so
            warnings.append(
                f"{split.source}: label(s) {unseen[:10]} never appear in the training data; the model cannot "
                f"predict them, so they are left out of its scores.{did_you_mean(unseen[0], labels)}"
            )
            known = set(labels)
            kept = {tuple(row): [label for label in row if label in known] for row in split.labels}
            split.labels = [kept[tuple(row)] for row in split.labels]  # rows with one set share its list
    evaluation, eval_name = (test, "test") if test is not None else (validation, "validation")
    return MultiLabelData(train, validation, evaluation, labels, eval_name, warnings)


def sample_per_label(split: MultiLabelSplit, k: int, seed: int) -> MultiLabelSplit:
    """At least K seeded rows per label (few-shot): labels are filled rarest first, and a row drawn for one label
    counts for every label it carries, so common labels need few extra rows. Rows without a label are not drawn."""
    rng = random.Random(seed)
    counts = Counter(label for row in split.labels for label in row)
    short = sorted(label for label, n in counts.items() if n < k)
    if short:
        raise TunesmithError(
            f"{split.source}: data.samples_per_class={k}, but label(s) {short[:10]} have fewer rows. "
            "Lower data.samples_per_class or add examples."
        )
    chosen: set[int] = set()
    have = Counter()
    for label in sorted(counts, key=lambda name: (counts[name], name)):
        rows = [i for i, row in enumerate(split.labels) if label in row and i not in chosen]
        rng.shuffle(rows)
        for i in rows[: max(0, k - have[label])]:
            chosen.add(i)
            have.update(split.labels[i])
    return _take(split, sorted(chosen))


def multi_hot(rows: list[list[str]], labels: list[str]) -> list[list[float]]:
    """A 0/1 vector per row. Rows with the same set share one vector (read only): a million rows of a few hundred
    distinct sets hold a few hundred vectors."""
    index = {label: i for i, label in enumerate(labels)}
    made: dict[tuple, list[float]] = {}
    out = []
    for row in rows:
        key = tuple(row)
        if key not in made:
            vector = [0.0] * len(labels)
            for label in row:
                vector[index[label]] = 1.0
            made[key] = vector
        out.append(made[key])
    return out


def _take(split: MultiLabelSplit, idx, source: str | None = None) -> MultiLabelSplit:
    return MultiLabelSplit(
        take(split.texts, idx), take(split.labels, idx), take(split.pairs, idx), source or split.source
    )


def _random_split(train: MultiLabelSplit, fraction: float, seed: int):
    idx = list(range(len(train)))
    random.Random(seed).shuffle(idx)
    cut = max(1, math.ceil(fraction * len(idx)))
    return _take(train, sorted(idx[cut:])), _take(train, sorted(idx[:cut]), f"{train.source} (validation split)")


__all__ = [
    "MultiLabelData",
    "MultiLabelSplit",
    "label_sets",
    "load_multilabel",
    "multi_hot",
    "read_multilabel",
    "sample_per_label",
]
