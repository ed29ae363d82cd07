"""Texts (or text pairs) with a number to predict: similarity, sentiment intensity, a risk score."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..errors import TunesmithError
from .bad_rows import leave_out
from .classification import Split, duplicate_warnings, read_split, sample_split
from .columns import take


@dataclass
class RegressionData:
    train: Split  # labels hold floats
    validation: Split
    evaluation: Split  # test if given, else validation
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def load_regression(data, seed: int) -> RegressionData:
    """Read train/validation/test per the recipe's data section; every label must be a finite number."""
    read = lambda path, role: numeric(
        read_split(
            path,
            data.text_column,
            data.label_column,
            data.text_pair_column,
            role,  # noqa: E731
            data.filter,
        ),
        data.label_column,
    )
    train = read(data.train, "data.train")
    if data.validation:
        validation = read(data.validation, "data.validation")
    else:
        train, validation = _random_split(train, data.validation_split, seed)
    if data.max_train_samples and data.max_train_samples < len(train):
        train = sample_split(train, data.max_train_samples, seed)
    if len(train) < 2 or len(set(train.labels)) < 2:
        raise TunesmithError(f"{data.train}: regression needs at least two training rows with different scores.")
    test = read(data.test, "data.test") if data.test else None
    evaluation, eval_name = (test, "test") if test is not None else (validation, "validation")
    warnings = duplicate_warnings(train, [s for s in (validation, test) if s is not None])
    return RegressionData(train, validation, evaluation, eval_name, warnings)


MAX_TARGET = 1e15  # still exact to the unit in float64; its square stays well inside float32's range after scaling


def numeric(split: Split, column: str) -> Split:
    """The split with float labels; cells that are not finite numbers are an error naming their rows."""
    values, bad = [], []
    for row, label in enumerate(split.labels, start=1):
        try:
            value = float(label)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            bad.append(row)
        values.append(value)
    problems = []
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        problems.append(
            TunesmithError(
                f"{split.source}: task regression needs a number in column '{column}'; data row(s) {shown} hold "
                f"something else (e.g. {split.labels[bad[0] - 1]!r}). For classes, use task: classification."
            )
        )
    huge = [row for row, value in enumerate(values, start=1) if abs(value) > MAX_TARGET]
    if huge:  # a model computes in 32 (or 16) bits: squared errors of such numbers overflow, and the run ends in NaN
        problems.append(
            TunesmithError(
                f"{split.source}: data row(s) {', '.join(map(str, huge[:10]))} hold targets beyond "
                f"+-{MAX_TARGET:.0e} (e.g. {values[huge[0] - 1]:.3g}) in column '{column}'. Rescale them first "
                "(divide by a unit, or take the log) and scale the predictions back."
            )
        )
    for problem in problems:  # under data_check: warn, those rows are left out
        if not leave_out(problem):
            raise problem
    if not problems:
        return Split(split.texts, values, split.pairs, split.source)
    kept = [i for i, value in enumerate(values) if math.isfinite(value) and abs(value) <= MAX_TARGET]
    if not kept:
        raise TunesmithError(f"{split.source}: no row left with a usable number in column '{column}'.")
    return Split(take(split.texts, kept), [values[i] for i in kept], take(split.pairs, kept), split.source)


def _random_split(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    idx = list(range(len(train)))
    random.Random(seed).shuffle(idx)
    cut = max(1, math.ceil(fraction * len(idx)))
    pick = lambda rows, source=None: Split(  # noqa: E731
        take(train.texts, rows), take(train.labels, rows), take(train.pairs, rows), source or train.source
    )
    return pick(sorted(idx[cut:])), pick(sorted(idx[:cut]), f"{train.source} (validation split)")
