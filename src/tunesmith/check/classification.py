"""The data check for classification data: columns, empty cells, labels and their balance, duplicates,
conflicting labels, train/evaluation overlap, token lengths and truncation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.classification import look_alike_labels, row_hashes
from ..data.columns import Read, list_cell, read_columns
from ..errors import did_you_mean, task_hint
from ..runs.auto_length import auto_max_length
from .common import Report, length_warning, normalise, read_splits, token_lengths

IMBALANCE = 10.0  # warn when the largest class has this many times the examples of the smallest
SHOWN_CLASSES = 20  # classes named in an error; the rest counted


# ----------------------------------------------------------------------------------- classification


def check_classification(recipe, name: str, tokenizer, report: Report) -> None:
    entry, usable = read_usable(recipe, name, "classification", report)
    if usable is None:
        return
    texts, labels = usable["train"]
    data = recipe.data
    _label_checks(entry, texts, labels, usable, data, name, report)
    _overlap_checks(entry, texts, usable, name, report)
    text_checks(entry, recipe, texts, tokenizer, name, report)


def read_usable(recipe, name: str, task: str, report: Report) -> tuple[dict, dict | None]:
    """The report entry, and split -> (texts, labels) of the usable rows (None when training could not start).
    Files are read in chunks into the table training reads too (texts memory-mapped: a file of any size)."""
    data = recipe.data
    read = read_splits(data, name, report, lambda path, split: _read(path, split, data))
    entry: dict = {"name": name, "task": task, "splits": {s: info for s, (_, info) in read.items()}}
    report.datasets.append(entry)
    if "train" not in read:
        return entry, None
    needed = [(data.text_column, "text_column"), (data.label_column, "label_column")]
    if data.text_pair_column:
        needed.append((data.text_pair_column, "text_pair_column"))
    usable = {}
    for split, (got, info) in read.items():
        found = list(got.scan.seen)
        missing = [(col, key) for col, key in needed if col not in got.scan.seen]
        for col, key in missing:
            report.errors.append(
                f"{name}: {getattr(data, split)} has no column '{col}' (data.{key}). Columns found: "
                f"{', '.join(found)}.{did_you_mean(col, found)}{task_hint(found)}"
            )
        if not missing:
            usable[split] = _cells(got, data, info, f"{name}: {getattr(data, split)}", report)
    if "train" not in usable:
        return entry, None
    if not usable["train"][0]:
        report.errors.append(
            f"{name}: no usable training rows: every row of {data.train} lacks a usable text or label "
            "(see the problems above)."
        )
        return entry, None
    return entry, usable


def text_checks(entry: dict, recipe, texts: list[str], tokenizer, name: str, report: Report) -> None:
    """Token lengths (and truncation at train.max_length), and texts the vocabulary cannot read."""
    if tokenizer is None:
        return
    max_length = auto_max_length(recipe, tokenizer, texts)[0].train.max_length  # what training will use
    entry["lengths"] = token_lengths(tokenizer, texts, max_length, recipe.train.seed)
    length_warning(entry["lengths"], name, report)
    if entry["lengths"].get("unknown_only"):
        report.warnings.append(
            f"{name}: {entry['lengths']['unknown_only']} training text(s) hold no token the model's "
            "vocabulary knows (all pieces are the unknown token: emoji, or a script the tokenizer "
            "lacks); the model sees them all as the same input."
        )


def check_regression(recipe, name: str, tokenizer, report: Report) -> None:
    """Numeric targets (the rows that are not), their range per split, and the texts as for classification."""
    entry, usable = read_usable(recipe, name, "regression", report)
    if usable is None:
        return
    entry["targets"] = {}
    for split, (_, labels) in usable.items():
        values = pd.to_numeric(pd.Series(labels), errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if len(bad):
            report.errors.append(
                f"{name}: {getattr(recipe.data, split)}: {len(bad)} target(s) in column '{recipe.data.label_column}' "
                f"are not numbers (data rows {', '.join(str(i + 1) for i in bad[:10])}; e.g. {labels[bad[0]]!r})."
            )
        good = values[np.isfinite(values.to_numpy(dtype=float))]
        entry["targets"][split] = (
            {
                k: round(float(v), 4)
                for k, v in (("min", good.min()), ("max", good.max()), ("mean", good.mean()), ("std", good.std()))
            }
            if len(good)
            else {}
        )
    if entry["targets"].get("train", {}).get("std") == 0:
        report.errors.append(f"{name}: every training target is the same number; there is nothing to learn.")
    texts = usable["train"][0]
    _overlap_checks(entry, texts, usable, name, report)
    text_checks(entry, recipe, texts, tokenizer, name, report)


def _read(path: str, split: str, data) -> tuple[Read, dict]:
    wanted = {"text": data.text_column, "pair": data.text_pair_column, "label": data.label_column}
    got = read_columns(path, f"data.{split}", wanted, data.filter, strict=False)
    info = {
        "file": path,
        "format": Path(path).suffix.lower().lstrip("."),
        "columns": list(got.scan.seen),
        "rows": got.scan.kept,
    }
    if data.filter:
        info["rows_in_file"] = got.scan.rows
    return got, info


def _cells(got: Read, data, info: dict, where: str, report: Report) -> tuple[Sequence[str], list[str]]:
    """Texts and labels of the usable rows; empty cells counted (and an error: the loader refuses them)."""
    bad = got.scan.bad
    info.update(empty_text=bad["text"][0], empty_label=bad["label"][0])
    problems = [(bad["text"], "empty or non-text (blank counts as empty)", data.text_column)]
    if data.text_pair_column:
        problems.append((bad["pair"], "empty or non-text (blank counts as empty)", data.text_pair_column))
    for (count, shown), what, col in [*problems, (bad["label"], "empty", data.label_column)]:
        if count:
            report.errors.append(
                f"{where}: {count} {what} cell(s) in column '{col}' (data rows {', '.join(map(str, shown))}"
                f"{' ...' if count > len(shown) else ''}). Remove those rows or fill them in."
            )
    if bad["listed"][0]:
        report.errors.append(
            f"{where}: {bad['listed'][0]} label cell(s) in column '{data.label_column}' hold lists or "
            "objects (several labels per text: multi-label classification). Set data.multi_label: true "
            "(or data.label_separator for strings like 'a|b'), or give each row one label."
        )
    texts = got.columns["text"]
    if data.text_pair_column:  # a pair is one input: duplicates, overlap and lengths are of both texts
        texts = [f"{t}\n{p}" for t, p in zip(texts, got.columns["pair"])]
    return texts, got.labels


def joined_by(values) -> str | None:
    """The separator that joins several labels in label values ('billing;refund'), if one does: most values that
    hold it are made of labels that also stand alone, or at least half the distinct values hold it and their parts
    are fewer than the values (the same labels in several sets)."""
    values = [str(v) for v in values]
    for sep in (";", "|", ","):
        holding = [v for v in values if sep in v]
        if not holding:
            continue
        alone = {v.strip() for v in values if sep not in v}
        known = sum(all(p.strip() in alone for p in v.split(sep)) for v in holding)
        parts = {p.strip() for v in values for p in v.split(sep)}
        if known * 2 >= len(holding) or len(holding) * 2 >= len(values) and len(parts) < len(values):
            return sep
    return None


def _label_checks(entry, texts, labels, usable, data, name, report) -> None:
    counts = pd.Series(labels).value_counts()
    entry["labels"] = {split: pd.Series(lab).value_counts().to_dict() for split, (_, lab) in usable.items()}
    listed = [c for c in counts.index if list_cell(str(c)) is not None]
    lists = len(listed) * 2 >= len(counts)  # CSV cells that hold lists: every combination would be a class of its own
    if lists:
        report.warnings.append(
            f"{name}: {len(listed)} of {len(counts)} label values look like lists (e.g. {listed[0]!r}): several "
            "labels per text is multi-label classification. Set data.multi_label: true to read them as label lists."
        )
    joined = None if lists else joined_by(counts.index)
    if joined:
        example = next(str(c) for c in counts.index if joined in str(c))
        report.warnings.append(
            f"{name}: label values are labels joined with '{joined}' (e.g. {example!r}): several labels per text is "
            f"multi-label classification. Set data.label_separator: '{joined}' to read each as a label set."
        )
    if len(counts) < 2:
        report.errors.append(
            f"{name}: the training data has {len(counts)} class(es); classification needs at least two."
        )
        return
    report.warnings += [f"{name}: {w}" for w in look_alike_labels(sorted(counts.index), data.train)]
    ratio = counts.max() / counts.min()
    entry["imbalance"] = round(float(ratio), 2)
    if ratio >= IMBALANCE:
        report.warnings.append(
            f"{name}: classes are imbalanced ({counts.index[0]!r} {counts.max()} vs {counts.index[-1]!r} "
            f"{counts.min()}, {ratio:.0f}x). Consider method.class_weights: balanced; watch macro-F1."
        )
    k = data.samples_per_class
    floor = max(k or 0, data.min_examples_per_class)
    short = counts[counts < floor]
    if len(short):
        key = (
            f"data.samples_per_class={k}"
            if k and k >= data.min_examples_per_class
            else f"data.min_examples_per_class={data.min_examples_per_class}"
        )
        named = ", ".join(f"'{c}' ({n})" for c, n in short.head(SHOWN_CLASSES).items())
        more = f" and {len(short) - SHOWN_CLASSES} more" if len(short) > SHOWN_CLASSES else ""
        report.errors.append(
            f"{name}: {len(short)} class(es) with fewer than {floor} training examples ({key}): {named}{more}. "
            + (
                "The labels look like lists: set data.multi_label: true."
                if lists
                else f"The labels look like label sets: set data.label_separator: '{joined}'."
                if joined
                else "Add examples, merge or drop those classes, or lower the setting."
            )
        )
    for split, (_, lab) in usable.items():
        unseen = sorted(set(lab) - set(counts.index))
        if split != "train" and unseen:
            report.errors.append(
                f"{name}: {split} label(s) {', '.join(map(repr, unseen[:10]))} never appear in training "
                f"data, so the model cannot learn them.{did_you_mean(unseen[0], counts.index)}"
            )
    text_ids = row_hashes(texts)  # hashes, not a frame of the texts: a second copy of a million of them
    pairs = np.unique(np.column_stack([text_ids, pd.factorize(pd.Series(labels))[0]]), axis=0)
    entry["duplicates"] = len(labels) - len(pairs)
    if entry["duplicates"]:
        report.warnings.append(f"{name}: {entry['duplicates']} duplicate training row(s) (same text and label).")
    ids, label_counts = np.unique(pairs[:, 0], return_counts=True)
    conflicting = ids[label_counts > 1]
    entry["conflicting_texts"] = len(conflicting)
    if len(conflicting):
        rows = np.flatnonzero(np.isin(text_ids, conflicting))
        example = min(texts[i] for i in rows)  # the first in sorted order, with every label it is given
        shown = sorted({labels[i] for i in rows if texts[i] == example})
        report.warnings.append(
            f"{name}: {len(conflicting)} text(s) appear with different labels (e.g. {example[:60]!r}: "
            f"{shown}). The model cannot fit both."
        )


def _overlap_checks(entry, train_texts, usable, name, report) -> None:
    # hashes in arrays, not the strings (nor sets of Python ints): a second copy of a million training texts
    # (twice) is what this check would hold otherwise
    exact, loose = np.unique(row_hashes(train_texts)), np.unique(_loose_hashes(train_texts))
    entry["overlap_with_train"] = {}
    for split, (texts, _) in usable.items():
        if split == "train":
            continue
        same = int(np.isin(row_hashes(texts), exact).sum())
        similar = int(np.isin(_loose_hashes(texts), loose).sum())
        entry["overlap_with_train"][split] = {"exact": same, "normalised": similar, "rows": len(texts)}
        if similar:
            report.warnings.append(
                f"{name}: {similar} of {len(texts)} {split} text(s) also appear in training data "
                f"({same} exactly, {similar - same} after normalising case and spaces); scores on "
                f"them overstate what the model learned."
            )


def _loose_hashes(texts) -> np.ndarray:
    return np.fromiter((hash(normalise(t)) for t in texts), dtype=np.int64, count=len(texts))
