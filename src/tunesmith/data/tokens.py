"""Tagged words for token classification (named entities, information extraction): JSONL/Parquet rows with
`tokens` + `tags` (IOB2: B-TYPE, I-TYPE, O; IOB1, BIOES, BILOU and IO read as IOB2), or `text` + `entities`
([{start, end, label}] character spans)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import TunesmithError, did_you_mean
from .columns import list_cell, list_literal

ENTITIES_CELL_MAX = 1_000_000  # characters of an entities list written into one CSV cell
WORD = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks, as most NER corpora split them


@dataclass
class TaggedSplit:
    tokens: Sequence[list[str]]  # a file's: columns of its table (`token_files`); else lists
    tags: Sequence[list[str]]
    source: str = ""
    iob1_rows: int = 0  # rows whose entities opened with I- (IOB1), read as IOB2
    bioes_rows: int = 0  # rows tagged BIOES/BILOU, read as IOB2
    io_rows: int = 0  # rows of a file tagged IO (the type alone), read as IOB2

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.bioes_rows:
            out.append(
                f"{self.source}: {self.bioes_rows} row(s) tagged BIOES/BILOU; read as IOB2 (S-/U- as B-, E-/L- as "
                "I-), the tags the model learns and predicts."
            )
        if self.io_rows:
            out.append(
                f"{self.source}: tagged IO (an entity type per word, no B-/I-); read as IOB2 in {self.io_rows} row(s): "
                "neighbouring words of one type make one entity."
            )
        if self.iob1_rows:
            out.append(
                f"{self.source}: {self.iob1_rows} row(s) tagged IOB1 (an entity may start with I-); read as IOB2, each "
                "entity's first word now B-."
            )
        return out


@dataclass
class TokenData:
    train: TaggedSplit
    validation: TaggedSplit
    evaluation: TaggedSplit
    labels: list[str]  # every tag, "O" first
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def spans_to_tags(text: str, entities: list[dict], where: str = "text") -> tuple[list[str], list[str]]:
    """Words of `text` and their IOB2 tags from character spans (a word inside a span takes its type). A span that
    covers no word, or shares a word with another span, cannot be tagged: an error, never a silent drop."""
    words = words_with_offsets(text)
    tags = ["O"] * len(words)
    for entity in sorted(entities, key=lambda e: e["start"]):
        inside = [i for i, (_, start, end) in enumerate(words) if start < entity["end"] and end > entity["start"]]
        shown = f"{entity['label']} [{entity['start']}, {entity['end']}) {text[entity['start'] : entity['end']]!r}"
        if not inside:
            raise TunesmithError(
                f"{where}: the entity {shown} covers no word; fix its offsets (they count characters from 0)."
            )
        if any(tags[i] != "O" for i in inside):
            raise TunesmithError(
                f"{where}: the entity {shown} overlaps another entity; tags give each word one entity, so "
                "nested or overlapping spans cannot be learned. Keep one of them."
            )
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + str(entity["label"])
    return [w for w, _, _ in words], tags


def check_spans(text: str, entities: list[dict], where: str = "entities") -> None:
    """Raise, saying why, unless the spans (start, end, label) tag words of `text` as a data file's would be read:
    whole-number offsets inside the text, each covering a word, none sharing a word with another."""
    for entity in entities:
        start, end = entity.get("start"), entity.get("end")
        if not (type(start) is int and type(end) is int and 0 <= start < end <= len(text)):
            raise TunesmithError(
                f"{where}: spans inside the text, 0 <= start < end <= {len(text)} (got {start}, {end})."
            )
    spans_to_tags(text, entities, where)


def tagged_rows(frame, data, path: str) -> TaggedSplit:
    """The rows of a frame (a file, or a chunk of one indexed by data row) as words and IOB2 tags; raises naming
    the data rows it cannot use."""
    if data.tokens_column in frame.columns and data.tags_column in frame.columns:
        tokens, tags = (
            _lists(frame[data.tokens_column], path, data.tokens_column, frame.index),
            _lists(frame[data.tags_column], path, data.tags_column, frame.index),
        )
        uneven = [int(i) + 1 for i, a, b in zip(frame.index, tokens, tags) if len(a) != len(b)]
        if uneven:
            raise TunesmithError(
                f"{path}: rows {uneven[:10]} have a different number of {data.tokens_column} and "
                f"{data.tags_column}; each word needs exactly one tag."
            )
    elif data.text_column in frame.columns and data.entities_column in frame.columns:
        pairs = [
            spans_to_tags(str(text), _entities(value, str(text), path, row), f"{path}: data row {row}")
            for row, text, value in zip(frame.index + 1, frame[data.text_column], frame[data.entities_column])
        ]
        tokens, tags = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        wanted = f"'{data.tokens_column}' + '{data.tags_column}' (or '{data.text_column}' + '{data.entities_column}')"
        raise TunesmithError(
            f"{path}: token classification needs columns {wanted}. Columns found: "
            f"{', '.join(map(str, frame.columns))}.{did_you_mean(data.tokens_column, frame.columns)} "
            "Set data.tokens_column / data.tags_column (or data.entities_column)."
        )
    named = set().union(*tags) - {"O"}  # every tag but O, gathered in C: a chunk holds half a million
    io = bool(named) and not any(_TAG.match(t) for t in named)  # IO: the type alone (Few-NERD), no B-/I-
    if io:
        tags = [[t if t == "O" else f"I-{t}" for t in row] for row in tags]
        named = {f"I-{t}" for t in named}
    bad = sorted(t for t in named if not _TAG.match(t))
    if bad:
        raise not_iob2(path, bad)
    bioes = ()
    if any(t[0] in _AS_IOB2 for t in named):  # only a file with BIOES/BILOU prefixes needs them rewritten
        tags, bioes = zip(*(from_bioes(row) for row in tags)) if tags else ((), ())
    tags, changed = zip(*(to_iob2(row) for row in tags)) if tags else ((), ())
    if io:
        return TaggedSplit(tokens, list(tags), source=path, io_rows=sum(changed))
    return TaggedSplit(tokens, list(tags), source=path, iob1_rows=sum(changed), bioes_rows=sum(bioes))


def not_iob2(path: str, bad: list[str]) -> TunesmithError:
    return TunesmithError(
        f"{path}: tag(s) {bad[:10]} are not IOB2 (B-TYPE, I-TYPE or O), nor BIOES/BILOU (S-, E-, U-, L- too); "
        "a file tagged IO (the type alone) must have no prefixed tag."
    )


_TAG = re.compile(r"^[BIESLU]-.+")
_AS_IOB2 = {"S": "B", "U": "B", "E": "I", "L": "I"}  # single-word entity opens one; an entity's last word is inside


def from_bioes(tags: list[str]) -> tuple[list[str], bool]:
    """BIOES (Flair, OntoNotes conversions) and BILOU (spaCy) tags as IOB2: they mark the same entities, with
    extra prefixes for an entity's last word and a one-word entity."""
    out = [_AS_IOB2[t[0]] + t[1:] if t[0] in _AS_IOB2 and t[1:2] == "-" else t for t in tags]
    return out, out != tags


def to_iob2(tags: list[str]) -> tuple[list[str], bool]:
    """IOB1 (I- opens an entity; B- only between two of the same type) as IOB2, where every entity opens with B-;
    scored as IOB2, an IOB1 file would count no entity at all. Unchanged tags are returned as given."""
    out, previous = None, "O"
    for i, tag in enumerate(tags):
        if tag[:2] == "I-" and (previous == "O" or previous[2:] != tag[2:]):
            out = list(tags) if out is None else out  # copied only when a tag changes
            out[i] = "B-" + tag[2:]
        previous = tag
    return (tags, False) if out is None else (out, True)


def _lists(column, path: str, name: str, index) -> list[list[str]]:
    out = []
    for row, value in zip(index + 1, column):
        if isinstance(value, str) and (listed := list_cell(value)) is not None:  # a list column saved to CSV
            value = listed
        if not isinstance(value, (list, tuple, np.ndarray)) or len(value) == 0:
            raise TunesmithError(
                f"{path}: data row {row}: '{name}' must be a non-empty list (a JSON array), got {type(value).__name__}."
            )
        out.append(list(map(str, value)))
    return out


def _entities(value, text: str, path: str, row: int) -> list[dict]:
    if isinstance(value, str):  # a CSV cell: the list as JSON, or as pandas' to_csv writes it
        value = list_literal(value, ENTITIES_CELL_MAX)
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None or not all(isinstance(e, dict) and {"start", "end", "label"} <= set(e) for e in items):
        raise TunesmithError(f'{path}: data row {row}: entities must be a list of {{"start", "end", "label"}} objects.')
    for entity in items:
        start, end = _offset(entity["start"]), _offset(entity["end"])
        if start is None or end is None:
            raise TunesmithError(
                f"{path}: data row {row}: entity {entity!r:.80} needs whole-number start and end offsets "
                "(characters from 0), not text or null."
            )
        if not 0 <= start < end <= len(text):
            raise TunesmithError(
                f"{path}: data row {row}: entity {entity!r:.80} is outside its text or reversed; offsets need "
                f"0 <= start < end <= {len(text)} (the text's length)."
            )
        if not isinstance(entity["label"], str) or not entity["label"].strip():
            raise TunesmithError(f"{path}: data row {row}: entity {entity!r:.80} needs a label (a non-empty string).")
        entity.update(start=start, end=end)
    return items


def _offset(value) -> int | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return int(value) if float(value).is_integer() else None
