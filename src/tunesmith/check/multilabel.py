"""The data check for multi-label data: label sets per split, rows without a label, rare and unseen labels,
label cardinality, overlap with training, token lengths."""

from __future__ import annotations

from collections import Counter

from ..data.multilabel import read_multilabel
from .classification import _overlap_checks, text_checks
from .common import Report, read_splits


def check_multilabel(recipe, name: str, tokenizer, report: Report) -> None:
    data = recipe.data
    splits = read_splits(data, name, report, lambda path, split: read_multilabel(path, data, f"data.{split}"))
    entry: dict = {
        "name": name,
        "task": "multi_label",
        "splits": {
            s: {"file": sp.source, "format": sp.source.rsplit(".", 1)[-1].lower(), "rows": len(sp)}
            for s, sp in splits.items()
        },
    }
    report.datasets.append(entry)
    if "train" not in splits:
        return
    counts = {s: Counter(label for row in sp.labels for label in row) for s, sp in splits.items()}
    entry["labels"] = {s: dict(c.most_common()) for s, c in counts.items()}
    entry["label_cardinality"] = {s: round(sum(map(len, sp.labels)) / max(len(sp), 1), 3) for s, sp in splits.items()}
    entry["rows_without_label"] = {s: sum(1 for row in sp.labels if not row) for s, sp in splits.items()}
    train = counts["train"]
    if len(train) < 2:
        report.errors.append(
            f"{name}: the training data has {len(train)} label(s); multi-label classification needs at least "
            f"two. Check data.label_separator ({data.label_separator!r}) against the label column."
        )
        return
    everywhere = sorted(label for label, n in train.items() if n == len(splits["train"]))
    if everywhere:
        report.warnings.append(
            f"{name}: label(s) {everywhere[:10]} are on every training row: they tell the model nothing, "
            "and it will predict them for every text. Drop them, or check data.label_separator "
            f"({data.label_separator!r})."
        )
    rare = sorted(label for label, n in train.items() if n < data.min_examples_per_class)
    if rare:
        report.warnings.append(
            f"{name}: label(s) with fewer than {data.min_examples_per_class} training rows: {rare[:10]}."
        )
    for split, c in counts.items():
        unseen = sorted(set(c) - set(train))
        if split != "train" and unseen:
            report.warnings.append(
                f"{name}: {split} label(s) {unseen[:10]} never appear in training data: the model cannot "
                "learn them, and they are left out of its scores."
            )
    # the memory-mapped texts as they are; a pair is joined to its text (one input), which is a list in memory
    texts = {
        s: sp.texts if sp.pairs is None else [f"{t}\n{p}" for t, p in zip(sp.texts, sp.pairs)]
        for s, sp in splits.items()
    }
    _overlap_checks(entry, texts["train"], {s: (t, None) for s, t in texts.items()}, name, report)
    text_checks(entry, recipe, texts["train"], tokenizer, name, report)
