"""The data check for classification data: columns, empty cells, labels and their balance, duplicates,
conflicting labels, train/evaluation overlap, token lengths and truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.classification import label_text, look_alike_labels
from ..data.readers import read_table
from ..errors import did_you_mean
from ..runs.auto_length import auto_max_length
from .common import Report, length_warning, normalise, read_splits, token_lengths

IMBALANCE = 10.0  # warn when the largest class has this many times the examples of the smallest


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
    """The report entry, and split -> (texts, labels) of the usable rows (None when training could not start)."""
    data = recipe.data
    read = read_splits(data, name, report, lambda path, split: _read(path, split, data))
    entry: dict = {"name": name, "task": task, "splits": {s: info for s, (_, info) in read.items()}}
    report.datasets.append(entry)
    frames = {s: frame for s, (frame, _) in read.items()}
    if "train" not in frames:
        return entry, None
    needed = [(data.text_column, "text_column"), (data.label_column, "label_column")]
    if data.text_pair_column:
        needed.append((data.text_pair_column, "text_pair_column"))
    usable = {}
    for split, frame in frames.items():
        missing = [(col, key) for col, key in needed if col not in frame.columns]
        for col, key in missing:
            report.errors.append(
                f"{name}: {getattr(data, split)} has no column '{col}' (data.{key}). Columns found: "
                f"{', '.join(map(str, frame.columns))}.{did_you_mean(col, frame.columns)}"
            )
        if not missing:
            usable[split] = _cells(frame, data, entry["splits"][split], f"{name}: {getattr(data, split)}", report)
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


def _read(path: str, split: str, data) -> tuple[pd.DataFrame, dict]:
    from ..data.classification import filter_rows

    frame = read_table(path, f"data.{split}")
    rows_in_file = len(frame)
    if data.filter:
        frame = filter_rows(frame, data.filter, path)
    info = {
        "file": path,
        "format": Path(path).suffix.lower().lstrip("."),
        "columns": list(map(str, frame.columns)),
        "rows": len(frame),
    }
    if data.filter:
        info["rows_in_file"] = rows_in_file
    return frame, info


def _cells(frame: pd.DataFrame, data, info: dict, where: str, report: Report) -> tuple[list[str], list[str]]:
    """Texts and labels of the usable rows; empty cells counted (and an error: the loader refuses them)."""

    def blank(v) -> bool:
        return not isinstance(v, str) or not v.strip()

    text_blank = frame[data.text_column].map(blank)
    label_blank = frame[data.label_column].map(
        lambda v: v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""
    )
    info.update(empty_text=int(text_blank.sum()), empty_label=int(label_blank.sum()))
    for count, what, col in (
        (info["empty_text"], "empty or non-text (blank counts as empty)", data.text_column),
        (info["empty_label"], "empty", data.label_column),
    ):
        if count:
            rows = text_blank if col == data.text_column else label_blank
            shown = ", ".join(str(i + 1) for i in np.flatnonzero(rows.to_numpy())[:10])
            report.errors.append(
                f"{where}: {count} {what} cell(s) in column '{col}' (data rows {shown}"
                f"{' ...' if count > 10 else ''}). Remove those rows or fill them in."
            )
    listed = frame[data.label_column].map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray)))
    if listed.any():
        report.errors.append(
            f"{where}: {int(listed.sum())} label cell(s) in column '{data.label_column}' hold lists or "
            "objects (several labels per text: multi-label classification). Set data.multi_label: true "
            "(or data.label_separator for strings like 'a|b'), or give each row one label."
        )
    keep = ~(text_blank | label_blank | listed)
    texts = frame.loc[keep, data.text_column].tolist()
    if data.text_pair_column:  # a pair is one input: duplicates, overlap and lengths are of both texts
        texts = [f"{t}\n{p}" for t, p in zip(texts, frame.loc[keep, data.text_pair_column].astype(str).tolist())]
    labels = [label_text(v) for v in frame.loc[keep, data.label_column].tolist()]
    return texts, labels


def _label_checks(entry, texts, labels, usable, data, name, report) -> None:
    counts = pd.Series(labels).value_counts()
    entry["labels"] = {split: pd.Series(lab).value_counts().to_dict() for split, (_, lab) in usable.items()}
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
        listed = ", ".join(f"'{c}' ({n})" for c, n in short.items())
        report.errors.append(
            f"{name}: class(es) with fewer than {floor} training examples ({key}): {listed}. "
            "Add examples, merge or drop those classes, or lower the setting."
        )
    for split, (_, lab) in usable.items():
        unseen = sorted(set(lab) - set(counts.index))
        if split != "train" and unseen:
            report.errors.append(
                f"{name}: {split} label(s) {', '.join(map(repr, unseen[:10]))} never appear in training "
                f"data, so the model cannot learn them.{did_you_mean(unseen[0], counts.index)}"
            )
    frame = pd.DataFrame({"text": texts, "label": labels})
    entry["duplicates"] = int(frame.duplicated().sum())
    if entry["duplicates"]:
        report.warnings.append(f"{name}: {entry['duplicates']} duplicate training row(s) (same text and label).")
    per_text = frame.drop_duplicates().groupby("text")["label"].nunique()
    conflicting = per_text[per_text > 1]
    entry["conflicting_texts"] = len(conflicting)
    if len(conflicting):
        example = conflicting.index[0]
        report.warnings.append(
            f"{name}: {len(conflicting)} text(s) appear with different labels (e.g. {example[:60]!r}: "
            f"{sorted(frame[frame.text == example].label.unique())}). The model cannot fit both."
        )


def _overlap_checks(entry, train_texts, usable, name, report) -> None:
    # hashes, not the strings: a second copy of a million training texts (twice) is what this check would hold
    exact, loose = {hash(t) for t in train_texts}, {hash(normalise(t)) for t in train_texts}
    entry["overlap_with_train"] = {}
    for split, (texts, _) in usable.items():
        if split == "train":
            continue
        same = sum(hash(t) in exact for t in texts)
        similar = sum(hash(normalise(t)) in loose for t in texts)
        entry["overlap_with_train"][split] = {"exact": same, "normalised": similar, "rows": len(texts)}
        if similar:
            report.warnings.append(
                f"{name}: {similar} of {len(texts)} {split} text(s) also appear in training data "
                f"({same} exactly, {similar - same} after normalising case and spaces); scores on "
                f"them overstate what the model learned."
            )
