"""The data check for token classification: readable tokens/tags (or spans), entity counts per type and split,
IOB1 files (read as IOB2), types only validation/test hold, sentences max_length would cut."""

from __future__ import annotations

from collections import Counter

from ..data.token_files import read_tagged, tag_counts
from .common import Report, read_splits, token_lengths


def check_tokens(recipe, name: str, tokenizer, report: Report) -> None:
    data = recipe.data
    splits = read_splits(data, name, report, lambda path, split: read_tagged(path, data, f"data.{split}"))
    entry: dict = {
        "name": name,
        "task": "token_classification",
        "splits": {
            s: {"file": sp.source, "format": sp.source.rsplit(".", 1)[-1].lower(), "rows": len(sp)}
            for s, sp in splits.items()
        },
    }
    report.datasets.append(entry)
    if "train" not in splits:
        return
    entry["labels"] = {s: _entity_counts(sp.tags) for s, sp in splits.items()}
    entry["iob1_rows"] = {s: sp.iob1_rows for s, sp in splits.items()}
    entry["bioes_rows"] = {s: sp.bioes_rows for s, sp in splits.items()}
    entry["io_rows"] = {s: sp.io_rows for s, sp in splits.items()}
    report.warnings += [f"{name}: {w}" for sp in splits.values() for w in sp.warnings]  # read as IOB2
    if not entry["labels"]["train"]:
        report.errors.append(f"{name}: no entity (B- tag) in the training data; there is nothing to learn.")
    for split, counts in entry["labels"].items():
        unseen = sorted(set(counts) - set(entry["labels"]["train"]))
        if split != "train" and unseen:
            report.errors.append(f"{name}: {split} entity type(s) {unseen[:10]} never appear in training data.")
    if tokenizer is not None:  # no truncation warning: long texts train (and are tagged) as overlapping windows
        lengths = token_lengths(tokenizer, splits["train"].tokens, recipe.train.max_length, recipe.train.seed, True)
        entry["lengths"] = {**lengths, "windowed": True}


def _entity_counts(tags) -> dict[str, int]:
    """Entities per type (their B- tags), most first."""
    counts = Counter({tag[2:]: n for tag, n in tag_counts(tags).items() if tag.startswith("B-")})
    return dict(counts.most_common())
