"""Preference pairs: a prompt, the answer wanted (chosen) and one not wanted (rejected), in TRL's two layouts.

Standard: `prompt`, `chosen`, `rejected` text columns. Conversational: `prompt` a list of chat messages ending
with a user turn, `chosen` and `rejected` lists holding the assistant's answer (JSON text in CSV/TSV cells); or,
without a prompt column, `chosen` and `rejected` whole conversations that share every turn but the last (TRL's
implicit prompt). Every pair becomes (prompt messages, chosen text, rejected text).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..errors import TunesmithError
from .bad_rows import read_usable
from .columns import list_literal
from .conversations import (
    MESSAGES_CELL_MAX,
    PROMPT_NAMES,
    _blank,
    _pick,
    carve_validation,
    checked_turns,
    seeded_subset,
)
from .readers import read_table


@dataclass
class Pair:
    prompt: list[dict]  # chat messages, the last a user turn
    chosen: str
    rejected: str


@dataclass
class Pairs:
    pairs: list[Pair]
    source: str

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self) -> str:
        return f"{self.source}: {len(self):,} preference pairs (prompt, chosen, rejected)"


@dataclass
class PreferenceData:
    train: Pairs
    validation: Pairs
    evaluation: Pairs
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def read_pairs(path: str, data, role: str) -> Pairs:
    frame = read_table(path, role)
    columns = list(map(str, frame.columns))
    missing = [c for c in (data.chosen_column, data.rejected_column) if c not in columns]
    if missing:
        raise TunesmithError(
            f"{path}: no column {' or '.join(repr(c) for c in missing)} for preference pairs. Columns found: "
            f"{', '.join(columns)}. Preference data needs a prompt column ({'/'.join(PROMPT_NAMES)}), the answer "
            f"wanted ('{data.chosen_column}') and one not wanted ('{data.rejected_column}'); name yours with "
            "data.prompt_column / data.chosen_column / data.rejected_column."
        )
    prompt_col = _pick(columns, data.prompt_column, PROMPT_NAMES)
    if data.prompt_column and prompt_col is None:
        raise TunesmithError(f"{path}: no column '{data.prompt_column}' for data.prompt_column.")
    pairs = read_usable(frame, lambda rows: _pairs(rows, path, prompt_col, data), path)
    if data.system_prompt:
        for pair in pairs:
            if pair.prompt[0]["role"] != "system":
                pair.prompt.insert(0, {"role": "system", "content": data.system_prompt})
    return Pairs(pairs, path)


def _pairs(frame, path: str, prompt_col: str | None, data) -> list[Pair]:
    prompts = frame[prompt_col].tolist() if prompt_col else [None] * len(frame)
    return [
        _pair(p, c, r, i + 1, path, prompt_col, data)
        for i, (p, c, r) in enumerate(zip(prompts, frame[data.chosen_column], frame[data.rejected_column]))
    ]


def _pair(prompt, chosen, rejected, row: int, path: str, prompt_col: str | None, data) -> Pair:
    where = f"{path}: data row {row}"
    chosen_turns = _turns(chosen, f"{where}, column '{data.chosen_column}'")
    rejected_turns = _turns(rejected, f"{where}, column '{data.rejected_column}'")
    if prompt_col is None:  # implicit prompt: both are whole conversations sharing all but their last turn
        if not isinstance(chosen_turns, list) or chosen_turns[:-1] != rejected_turns[:-1] or len(chosen_turns) < 2:
            raise TunesmithError(
                f"{where}: without a prompt column, '{data.chosen_column}' and '{data.rejected_column}' must be "
                "chat conversations that share every turn but the last (the answers); or add a prompt column."
            )
        messages = chosen_turns[:-1]
    else:
        messages = _turns(prompt, f"{where}, column '{prompt_col}'")
        messages = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
    if messages[-1]["role"] != "user":
        raise TunesmithError(f"{where}: the prompt must end with a user turn, not {messages[-1]['role']!r}.")
    good, bad = _answer(chosen_turns, where, data.chosen_column), _answer(rejected_turns, where, data.rejected_column)
    if good.strip() == bad.strip():
        raise TunesmithError(
            f"{where}: the chosen and the rejected answer are the same text, so the pair prefers nothing. "
            "Remove the row or fix one of the answers."
        )
    return Pair([dict(m) for m in messages], good, bad)


def _turns(value, where: str) -> str | list[dict]:
    """A cell as text, or as chat messages (lists, or a list written as text into a CSV/TSV cell)."""
    if hasattr(value, "tolist"):  # parquet gives numpy arrays
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        listed = list_literal(value, MESSAGES_CELL_MAX)  # JSON, or a Python list as pandas' to_csv writes it
        if listed is None:
            return value  # text that happens to start like a list
        value = listed
    if isinstance(value, str):
        if not value.strip():
            raise TunesmithError(f"{where}: empty text. Remove the row or fill it in.")
        return value
    if _blank(value):
        raise TunesmithError(f"{where}: empty cell. Remove the row or fill it in.")
    if not isinstance(value, list) or not value:
        raise TunesmithError(f"{where}: expected text or a list of chat messages, got {type(value).__name__}.")
    return checked_turns(value, where)


def _answer(turns, where: str, column: str) -> str:
    """The answer a chosen/rejected cell holds: its text, or its last message, which must be the assistant's."""
    if isinstance(turns, str):
        return turns
    last = turns[-1]
    if last["role"] != "assistant" or not last["content"].strip():
        raise TunesmithError(f"{where}, column '{column}': the last message must be a non-empty assistant answer.")
    return last["content"]


def load_preference(data, seed: int) -> PreferenceData:
    """Read train/validation/test pairs; carve a seeded validation split when none is given (as for SFT data)."""
    if data.filter:
        raise TunesmithError("data.filter selects rows of classification data; for preference pairs, filter the file.")
    train = read_pairs(data.train, data, "data.train")
    if data.max_train_samples and data.max_train_samples < len(train):
        train.pairs = random.Random(seed).sample(train.pairs, data.max_train_samples)
    if data.validation:
        validation = read_pairs(data.validation, data, "data.validation")
    else:
        kept, held = carve_validation(train.pairs, seed, data.validation_split, data.train, "pair")
        validation = Pairs(held, f"{data.train} (validation split)")
        train = Pairs(kept, data.train)
    test = read_pairs(data.test, data, "data.test") if data.test else None
    if data.max_eval_samples:
        for split in (validation, test):
            if split is not None:
                split.pairs = seeded_subset(split.pairs, data.max_eval_samples, seed)
    evaluation, eval_name = (test, "test") if test else (validation, "validation")
    return PreferenceData(train, validation, evaluation, eval_name)
