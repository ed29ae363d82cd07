"""Labeled text for classification: column mapping, checks, splits. Labels stay the user's strings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ..errors import TunesmithError, did_you_mean
from .bad_rows import leave_out
from .columns import (
    SHOWN,
    bad_texts,
    filter_values,
    missing_filter_column,
    no_filter_match,
    read_columns,
    take,
)


@dataclass
class Split:
    texts: list[str]
    labels: list[str] | None
    pairs: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ClassificationData:
    train: Split
    validation: Split
    evaluation: Split  # the set base and tuned are compared on: test if given, else validation
    labels: list[str]
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def read_split(
    path: str,
    text_col: str,
    label_col: str | None,
    pair_col: str | None = None,
    role: str = "data",
    where: dict | None = None,
    options: dict[str, str] | None = None,
) -> Split:
    """The file's texts (memory-mapped columns, read in chunks and cached: any size) and labels. `options` names
    the command-line flag that sets each column (eval: --label-column), for the error text."""
    read = read_columns(path, role, {"text": text_col, "pair": pair_col, "label": label_col}, where, options)
    return Split(read.columns["text"], read.labels, read.columns.get("pair"), source=path)


def filter_rows(frame: pd.DataFrame, where: dict, path: str) -> pd.DataFrame:
    """Rows whose columns hold the given value (or one of the listed values): data.filter."""
    for col, wanted in where.items():
        if col not in frame.columns:
            raise missing_filter_column(path, col, list(map(str, frame.columns)))
        frame = frame[frame[col].astype(str).isin(filter_values(wanted))]
    if frame.empty:
        raise no_filter_match(path, where)
    return frame.reset_index(drop=True)


def text_cells(frame: pd.DataFrame, col: str, path: str) -> list[str]:
    values = frame[col].tolist()
    bad = [i + 1 for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise bad_texts(path, col, len(bad), bad[:SHOWN])
    return values


def load_classification(data, seed: int) -> ClassificationData:
    """Read train/validation/test per the recipe's data section and check they can train a classifier."""
    read = lambda path, role: read_split(
        path,
        data.text_column,
        data.label_column,
        data.text_pair_column,
        role,  # noqa: E731
        data.filter,
    )
    train = read(data.train, "data.train")
    if data.validation:
        validation = read(data.validation, "data.validation")
    else:
        _check_class_counts(train, data.min_examples_per_class, data.train)
        train, validation = carve_validation(train, data.validation_split, seed)
    if data.samples_per_class:
        train = sample_per_class(train, data.samples_per_class, seed)
    elif data.max_train_samples and data.max_train_samples < len(train):
        train = sample_split(train, data.max_train_samples, seed)
    _check_class_counts(train, data.min_examples_per_class, data.train)
    labels = sorted(set(train.labels))
    validation = _known_labels(validation, labels, data.train)
    test = _known_labels(read(data.test, "data.test"), labels, data.train) if data.test else None
    evaluation, eval_name = (test, "test") if test is not None else (validation, "validation")
    warnings = duplicate_warnings(train, [s for s in (validation, test) if s is not None]) + look_alike_labels(
        labels, data.train
    )
    return ClassificationData(train, validation, evaluation, labels, eval_name, warnings)


def _check_class_counts(split: Split, minimum: int, path: str) -> None:
    counts = pd.Series(split.labels).value_counts()
    if len(counts) < 2:
        raise TunesmithError(
            f"{path}: only one class ({counts.index[0]!r}) in the training data; classification needs at least two."
        )
    rare = counts[counts < minimum]
    if len(rare):
        listed = ", ".join(f"'{k}' ({v})" for k, v in rare.items())
        raise TunesmithError(
            f"{path}: class(es) with fewer than {minimum} training examples: {listed}. "
            "Add examples, merge or drop those classes, or lower data.min_examples_per_class."
        )


def _known_labels(split: Split, labels: list[str], train_path: str) -> Split:
    """The split, whose labels must all be in training; under data_check: warn, without the rows whose are not."""
    unseen = sorted(set(split.labels) - set(labels))
    if not unseen:
        return split
    listed = ", ".join(f"'{u}'" for u in unseen[:10])
    hint = did_you_mean(unseen[0], labels)
    problem = TunesmithError(
        f"{split.source}: label(s) {listed} never appear in the training data ({train_path}), so the model cannot "
        f"learn them.{hint} Fix the spelling, add training examples, or drop those rows."
    )
    if not leave_out(problem):
        raise problem
    known = set(labels)
    kept = [i for i, label in enumerate(split.labels) if label in known]
    if not kept:
        raise TunesmithError(f"{split.source}: no row left: every label is one training lacks.")
    return _take(split, kept)


def carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A stratified, seeded validation split (at least one example per class)."""
    n_classes = len(set(train.labels))
    size = max(math.ceil(fraction * len(train)), n_classes)
    keep, held = train_test_split(np.arange(len(train)), test_size=size, random_state=seed, stratify=train.labels)
    return _take(train, keep), _take(train, held, source=f"{train.source} (validation split)")


def sample_split(split: Split, n: int, seed: int) -> Split:
    """A seeded sample of n rows, stratified so every class keeps its share (and at least one row)."""
    counts = pd.Series(split.labels).value_counts()
    if n >= len(counts) and counts.min() >= 2:
        idx, _ = train_test_split(np.arange(len(split)), train_size=n, random_state=seed, stratify=split.labels)
    else:
        idx = pd.Series(range(len(split))).sample(n=n, random_state=seed).to_numpy()
    return _take(split, idx)


def sample_per_class(split: Split, k: int, seed: int) -> Split:
    """Exactly k seeded examples of every class (the few-shot setting); an error names classes with fewer."""
    frame = pd.DataFrame({"label": split.labels, "i": range(len(split))})
    counts = frame.label.value_counts()
    short = counts[counts < k]
    if len(short):
        listed = ", ".join(f"'{label}' ({n})" for label, n in short.items())
        raise TunesmithError(
            f"{split.source}: data.samples_per_class={k}, but class(es) have fewer examples: {listed}. "
            "Lower data.samples_per_class or add examples."
        )
    picked = frame.groupby("label").sample(n=k, random_state=seed)
    return _take(split, sorted(picked.i.tolist()))


def _take(split: Split, idx, source: str | None = None) -> Split:
    return Split(take(split.texts, idx), take(split.labels, idx), take(split.pairs, idx), source or split.source)


def look_alike_labels(labels: list[str], path: str) -> list[str]:
    """Labels that differ only in case or spaces ('Positive ' vs 'positive') are two classes to the model."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(" ".join(label.split()).casefold(), []).append(label)
    return [
        f"{path}: labels {', '.join(map(repr, same))} differ only in case or spacing and are trained as different "
        "classes. If they mean the same, write them the same way."
        for same in groups.values()
        if len(same) > 1
    ]


def duplicate_warnings(train: Split, others: list[Split]) -> list[str]:
    """Repeated training rows, and evaluation inputs also in training (a pair counts as one input: both texts).
    Rows are compared by hash: a set of a million training texts would be a second copy of them in memory."""
    out = []
    rows = row_hashes(train.texts, train.pairs, train.labels)
    dupes = len(rows) - len(np.unique(rows))
    if dupes:
        out.append(
            f"{train.source}: {dupes} duplicate row(s) (same {'pair' if train.pairs else 'text'} and label) in "
            f"training data."
        )
    seen = np.unique(row_hashes(train.texts, train.pairs))
    for split in others:
        shared = int(np.isin(row_hashes(split.texts, split.pairs), seen).sum())
        if shared:
            what = "text pair(s)" if split.pairs is not None else "text(s)"
            out.append(
                f"{split.source}: {shared} {what} also appear in the training data; evaluation on them "
                f"overstates accuracy."
            )
    return out


def row_hashes(*columns) -> np.ndarray:
    """One 64-bit hash per row of the given columns (None columns skipped), read a block at a time."""
    columns = [c for c in columns if c is not None]
    return np.fromiter((hash(row) for row in zip(*columns)), dtype=np.int64, count=len(columns[0]))
