"""How much of an answer its source holds: the share of the answer's content words and numbers found in the
prompt. Scored on generations as `faithfulness` (tasks/generation/text_metrics.py), and used on training data by
`data.min_answer_support` to leave out references that go beyond their source (XSum's lead sentences, often
about facts the article lacks): a model trained on them learns to write what its input does not say."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*%?")  # an apostrophe splits: Acme's -> acme, s
_NUMBER = re.compile(r"\d")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def supported(answer: str, source: str) -> list[tuple[str, bool]]:
    """Each content word and number of `answer` (stop words left out), and whether `source` holds it (a number
    in any of its spellings: 1,200 = 1200, 45% = 45)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    given = words(source)
    known = set(given) | {plain_number(w) for w in given if is_number(w)}
    content = [w for w in words(answer) if w not in ENGLISH_STOP_WORDS]
    return [(w, w in known or (is_number(w) and plain_number(w) in known)) for w in content]


def support_share(answer: str, source: str) -> float | None:
    """Share of the answer's content words and numbers found in the source; None when it has none."""
    found = supported(answer, source)
    return sum(ok for _, ok in found) / len(found) if found else None


def is_number(word: str) -> bool:
    return bool(_NUMBER.search(word))


def plain_number(text: str) -> str:
    return text.replace(",", "").rstrip("%").rstrip(".")
