"""What a predictor accepts from Python callers: a list of strings, or one string (then one answer comes back, as
SetFit's `predict` does). Anything else is a message naming the item, never a tokenizer's traceback; a single
string is never read as a list of characters."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..errors import TunesmithError


def text_list(texts, name: str = "texts") -> tuple[list[str], bool]:
    """(the texts as a list, whether one string came alone)."""
    if isinstance(texts, str):
        return [_checked(texts, name)], True
    if texts is None or isinstance(texts, (dict, bytes)) or not isinstance(texts, Iterable):
        raise TunesmithError(f"{name}: give a list of strings (or one string), not {type(texts).__name__}.")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TunesmithError(
                f"{name}[{i}] is {type(text).__name__} ({text!r:.40}), not a string; every item must be text."
            )
        _checked(text, f"{name}[{i}]")
    return items, False


def _checked(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TunesmithError(
            f"{where} holds a lone surrogate (e.g. '\\ud800'), which is not text: read the file as UTF-8, or "
            "clean it with text.encode('utf-8', 'replace').decode()."
        ) from None
    return text


def one_or_many(method):
    """Check a predictor method's texts (and text pairs); one string in, one answer out."""

    @functools.wraps(method)
    def checked(self, texts, *args, **kwargs):
        texts, single = text_list(texts)
        pairs = kwargs.get("pairs", args[0] if args else None)
        if pairs is not None:
            pairs, _ = text_list([pairs] if single and isinstance(pairs, str) else pairs, "pairs")
            if len(pairs) != len(texts):
                raise TunesmithError(
                    f"pairs holds {len(pairs)} texts for {len(texts)} texts; give one pair text per text."
                )
            if args:
                args = (pairs, *args[1:])
            else:
                kwargs["pairs"] = pairs
        answer = method(self, texts, *args, **kwargs)
        return answer[0] if single else answer

    return checked
