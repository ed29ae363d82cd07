"""Pre-flight data check: everything about the data that would make a run fail or learn nothing,
found before a single step is paid for, and reported all at once rather than one error per attempt.

`check_recipe` looks at every dataset a recipe trains on (its data, each stage's, each experience's,
a domain corpus) and returns a report: errors (training would fail or learn nothing) and warnings
(it would train, but look at this), with the figures behind them. `tunesmith data check` prints it;
`tunesmith train` runs it first, stops on errors and saves it in the run directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TunesmithError, did_you_mean
from ..data.classification import label_text, look_alike_labels
from ..data.readers import read_table

LENGTH_SAMPLE = 20_000   # token lengths are measured on at most this many rows (seeded sample)
IMBALANCE = 10.0         # warn when the largest class has this many times the examples of the smallest
SPLITS = ("train", "validation", "test")


@dataclass
class Report:
    datasets: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "datasets": self.datasets}


def check_recipe(recipe) -> Report:
    """The report for every dataset the (validated) recipe would train and evaluate on."""
    from ..recipe import stage_recipe
    report = Report()
    if recipe.stages:
        for i, stage in enumerate(recipe.stages):
            _check_one(stage_recipe(recipe, i), f"stage {i + 1} ({stage.name})", report)
    elif recipe.experiences:
        for exp in recipe.experiences:
            _check_one(recipe.model_copy(update={"data": exp.data}), f"experience {exp.name}", report)
    else:
        _check_one(recipe, "data", report)
    return report


def _check_one(recipe, name: str, report: Report) -> None:
    if recipe.method.name == "domain_adaptation":
        _check_corpus(recipe, name, report)  # its data (task texts) is the target's, checked with the target stage
        return
    if recipe.data is None:
        return
    tokenizer = _tokenizer(recipe.model.name, name, report)
    if recipe.task == "generation":
        from .chat import check_generation
        check_generation(recipe, name, tokenizer, report)
    else:
        check_classification(recipe, name, tokenizer, report)


def _tokenizer(model_name: str, name: str, report: Report):
    from ..models.loading import load_tokenizer, resolve_weights
    try:
        return load_tokenizer(resolve_weights(model_name))
    except TunesmithError as err:
        report.errors.append(f"{name}: model: {err}")
        return None


def _check_corpus(recipe, name: str, report: Report) -> None:
    from ..data.corpus import read_corpus
    method = recipe.method
    entry = {"name": f"{name}: corpus", "task": "domain_adaptation"}
    if not method.corpus:
        report.datasets.append({**entry, "documents": 0, "note": "task texts only (method.task_texts)"})
        return
    try:
        docs = read_corpus(method.corpus, method.text_column, "method.corpus")
    except TunesmithError as err:
        report.errors.append(f"{name}: {err}")
        return
    entry.update(documents=len(docs), characters=sum(map(len, docs)), empty=0)
    if len(docs) < 2 and not method.task_texts:
        report.errors.append(f"{name}: method.corpus holds fewer than 2 documents ({len(docs)}); at least 2 are needed "
                             "(one is held out to measure perplexity). Separate documents in .txt files with a blank line.")
    dupes = len(docs) - len(set(docs))
    if dupes:
        report.warnings.append(f"{name}: {dupes} duplicate document(s) in the corpus (they are trained on more than once).")
    entry["duplicates"] = dupes
    report.datasets.append(entry)


# ----------------------------------------------------------------------------------- classification

def check_classification(recipe, name: str, tokenizer, report: Report) -> None:
    data = recipe.data
    read = read_splits(data, name, report, lambda path, split: _read(path, split, data))
    entry: dict = {"name": name, "task": "classification", "splits": {s: info for s, (_, info) in read.items()}}
    report.datasets.append(entry)
    frames = {s: frame for s, (frame, _) in read.items()}
    if "train" not in frames:
        return
    needed = [(data.text_column, "text_column"), (data.label_column, "label_column")]
    if data.text_pair_column:
        needed.append((data.text_pair_column, "text_pair_column"))
    usable = {}
    for split, frame in frames.items():
        missing = [(col, key) for col, key in needed if col not in frame.columns]
        for col, key in missing:
            report.errors.append(f"{name}: {getattr(data, split)} has no column '{col}' (data.{key}). Columns found: "
                                 f"{', '.join(map(str, frame.columns))}.{did_you_mean(col, frame.columns)}")
        if not missing:
            usable[split] = _cells(frame, data, entry["splits"][split], f"{name}: {getattr(data, split)}", report)
    if "train" not in usable:
        return
    texts, labels = usable["train"]
    if not texts:
        report.errors.append(f"{name}: no usable training rows: every row of {data.train} lacks a usable text or label (see the problems above).")
        return
    _label_checks(entry, texts, labels, usable, data, name, report)
    _overlap_checks(entry, texts, usable, name, report)
    if tokenizer is not None:
        entry["lengths"] = token_lengths(tokenizer, texts, recipe.train.max_length, recipe.train.seed)
        _length_warning(entry["lengths"], name, report)
        if entry["lengths"].get("unknown_only"):
            report.warnings.append(f"{name}: {entry['lengths']['unknown_only']} training text(s) hold no token the model's "
                                   "vocabulary knows (all pieces are the unknown token: emoji, or a script the tokenizer "
                                   "lacks); the model sees them all as the same input.")


def read_splits(data, name: str, report: Report, read) -> dict:
    """split -> read(path, split) for every split the data section names; what cannot be read becomes
    an error in the report (and the split is left out) instead of stopping the check."""
    out = {}
    for split in SPLITS:
        path = getattr(data, split)
        if path is None:
            continue
        try:
            out[split] = read(path, split)
        except TunesmithError as err:
            report.errors.append(f"{name}: {err}")
    return out


def _read(path: str, split: str, data) -> tuple[pd.DataFrame, dict]:
    from ..data.classification import filter_rows
    frame = read_table(path, f"data.{split}")
    rows_in_file = len(frame)
    if data.filter:
        frame = filter_rows(frame, data.filter, path)
    info = {"file": path, "format": Path(path).suffix.lower().lstrip("."), "columns": list(map(str, frame.columns)),
            "rows": len(frame)}
    if data.filter:
        info["rows_in_file"] = rows_in_file
    return frame, info


def _cells(frame: pd.DataFrame, data, info: dict, where: str, report: Report) -> tuple[list[str], list[str]]:
    """Texts and labels of the usable rows; empty cells counted (and an error: the loader refuses them)."""
    def blank(v) -> bool:
        return not isinstance(v, str) or not v.strip()
    text_blank = frame[data.text_column].map(blank)
    label_blank = frame[data.label_column].map(lambda v: v is None or (isinstance(v, float) and v != v) or str(v).strip() == "")
    info.update(empty_text=int(text_blank.sum()), empty_label=int(label_blank.sum()))
    for count, what, col in ((info["empty_text"], "empty or non-text (blank counts as empty)", data.text_column),
                             (info["empty_label"], "empty", data.label_column)):
        if count:
            rows = (text_blank if col == data.text_column else label_blank)
            shown = ", ".join(str(i + 1) for i in np.flatnonzero(rows.to_numpy())[:10])
            report.errors.append(f"{where}: {count} {what} cell(s) in column '{col}' (data rows {shown}"
                                 f"{' ...' if count > 10 else ''}). Remove those rows or fill them in.")
    listed = frame[data.label_column].map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray)))
    if listed.any():
        report.errors.append(f"{where}: {int(listed.sum())} label cell(s) in column '{data.label_column}' hold lists or "
                             "objects (several labels per text: multi-label classification, which tunesmith does not "
                             "train yet). Give each row one label.")
    keep = ~(text_blank | label_blank | listed)
    texts = frame.loc[keep, data.text_column].tolist()
    labels = [label_text(v) for v in frame.loc[keep, data.label_column].tolist()]
    return texts, labels


def _label_checks(entry, texts, labels, usable, data, name, report) -> None:
    counts = pd.Series(labels).value_counts()
    entry["labels"] = {split: pd.Series(lab).value_counts().to_dict() for split, (_, lab) in usable.items()}
    if len(counts) < 2:
        report.errors.append(f"{name}: the training data has {len(counts)} class(es); classification needs at least two.")
        return
    report.warnings += [f"{name}: {w}" for w in look_alike_labels(sorted(counts.index), data.train)]
    ratio = counts.max() / counts.min()
    entry["imbalance"] = round(float(ratio), 2)
    if ratio >= IMBALANCE:
        report.warnings.append(f"{name}: classes are imbalanced ({counts.index[0]!r} {counts.max()} vs {counts.index[-1]!r} "
                               f"{counts.min()}, {ratio:.0f}x). Consider method.class_weights: balanced; watch macro-F1.")
    k = data.samples_per_class
    floor = max(k or 0, data.min_examples_per_class)
    short = counts[counts < floor]
    if len(short):
        key = f"data.samples_per_class={k}" if k and k >= data.min_examples_per_class else \
            f"data.min_examples_per_class={data.min_examples_per_class}"
        listed = ", ".join(f"'{c}' ({n})" for c, n in short.items())
        report.errors.append(f"{name}: class(es) with fewer than {floor} training examples ({key}): {listed}. "
                             "Add examples, merge or drop those classes, or lower the setting.")
    for split, (_, lab) in usable.items():
        unseen = sorted(set(lab) - set(counts.index))
        if split != "train" and unseen:
            report.errors.append(f"{name}: {split} label(s) {', '.join(map(repr, unseen[:10]))} never appear in training "
                                 f"data, so the model cannot learn them.{did_you_mean(unseen[0], counts.index)}")
    frame = pd.DataFrame({"text": texts, "label": labels})
    entry["duplicates"] = int(frame.duplicated().sum())
    if entry["duplicates"]:
        report.warnings.append(f"{name}: {entry['duplicates']} duplicate training row(s) (same text and label).")
    per_text = frame.drop_duplicates().groupby("text")["label"].nunique()
    conflicting = per_text[per_text > 1]
    entry["conflicting_texts"] = len(conflicting)
    if len(conflicting):
        example = conflicting.index[0]
        report.warnings.append(f"{name}: {len(conflicting)} text(s) appear with different labels (e.g. {example[:60]!r}: "
                               f"{sorted(frame[frame.text == example].label.unique())}). The model cannot fit both.")


def normalise(text: str) -> str:
    """Case and spacing do not make a different example."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def _overlap_checks(entry, train_texts, usable, name, report) -> None:
    exact, loose = set(train_texts), {normalise(t) for t in train_texts}
    entry["overlap_with_train"] = {}
    for split, (texts, _) in usable.items():
        if split == "train":
            continue
        same = sum(t in exact for t in texts)
        similar = sum(normalise(t) in loose for t in texts)
        entry["overlap_with_train"][split] = {"exact": same, "normalised": similar, "rows": len(texts)}
        if similar:
            report.warnings.append(f"{name}: {similar} of {len(texts)} {split} text(s) also appear in training data "
                                   f"({same} exactly, {similar - same} after normalising case and spaces); scores on "
                                   f"them overstate what the model learned.")


# ----------------------------------------------------------------------------------- token lengths

def token_lengths(tokenizer, texts: list[str], max_length: int, seed: int) -> dict:
    """Histogram and truncation of the texts' token counts (special tokens included), on a seeded sample."""
    sampled = len(texts) > LENGTH_SAMPLE
    if sampled:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in rng.choice(len(texts), LENGTH_SAMPLE, replace=False)]
    ids = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    from ..engine.batching import unknown_only
    return {**length_stats(np.array([len(row) for row in ids]), max_length, sampled),
            "unknown_only": unknown_only(tokenizer, [{"input_ids": row} for row in ids])}


def length_stats(lengths: np.ndarray, max_length: int, sampled: bool = False) -> dict:
    edges = [e for e in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if e < lengths.max()] + [int(lengths.max())]
    edges = sorted(set(edges + ([max_length] if max_length < lengths.max() else [])))
    hist, low = [], 0
    for edge in edges:
        hist.append([f"{low + 1}-{edge}", int(((lengths > low) & (lengths <= edge)).sum())])
        low = edge
    over = lengths[lengths > max_length]
    return {"count": int(len(lengths)), "sampled": sampled, "mean": round(float(lengths.mean()), 1),
            "p50": int(np.percentile(lengths, 50)), "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max()),
            "max_length": max_length, "truncated": int(len(over)),
            "truncated_share": round(len(over) / len(lengths), 4),
            "tokens_cut_mean": round(float((over - max_length).mean()), 1) if len(over) else 0.0, "histogram": hist}


def _length_warning(stats: dict, name: str, report: Report) -> None:
    if stats["truncated"]:
        report.warnings.append(
            f"{name}: {stats['truncated']} of {stats['count']} training texts ({stats['truncated_share']:.1%}) exceed "
            f"train.max_length={stats['max_length']} tokens and lose {stats['tokens_cut_mean']:.0f} tokens on average "
            f"(longest {stats['max']}). Raise train.max_length if the end of a text matters.")
