"""Generation data in any of four layouts, turned into one shape: a list of chat messages per sample.

Layouts: OpenAI-style `messages` lists, prompt/response pairs (any column names), Alpaca
instruction/input/output, and plain text. Plain text becomes a single message with role "text":
it is trained on whole, without a chat template.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from ..errors import TunesmithError
from .bad_rows import read_usable
from .columns import list_literal, take

log = logging.getLogger(__name__)
PROMPT_NAMES = ("prompt", "question", "query", "input", "instruction", "user")
RESPONSE_NAMES = ("response", "answer", "completion", "output", "target", "assistant")
LABEL_NAMES = ("label", "labels", "category", "class", "intent", "summary")  # a classification or summary file's
ROLES = {"system", "user", "assistant"}
MESSAGES_CELL_MAX = 4_000_000  # characters of a conversation written into one CSV cell (a long document and its answer)
# the data settings that shape a file's conversations (and so name its table)
SHAPING = ("format", "messages_column", "prompt_column", "response_column", "text_column", "system_prompt")
FORMAT_NAMES = {
    "messages": "chat messages",
    "prompt_response": "prompt/response pairs",
    "alpaca": "Alpaca instruction/input/output",
    "text": "plain text",
}


@dataclass
class Conversations:
    samples: Sequence[list[dict]]  # each: [{"role": ..., "content": ...}, ...]; a file's: a table's `Samples`
    format: str
    source: str
    # plain text read beside a label-like column, most likely meant as the answers: (text column, that column)
    unread: tuple[str, str] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> str:
        unit = "texts" if self.format == "text" else "conversations"
        return f"{self.source}: detected {FORMAT_NAMES[self.format]}, {len(self):,} {unit}{self.unread_note()}"

    def unread_note(self) -> str:
        if not self.unread:
            return ""
        text, col = self.unread
        return (
            f"; column '{col}' is not read (plain text trains the model to continue the texts). To answer each "
            f"text with its {col}, set data.prompt_column: {text} and data.response_column: {col}"
        )


@dataclass
class GenerationData:
    train: Conversations
    validation: Conversations
    evaluation: Conversations
    eval_name: str
    warnings: list[str] = field(default_factory=list)


def detect_format(columns: list[str], data) -> str:
    if data.format != "auto":
        return data.format
    if data.messages_column in columns:
        return "messages"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if _pick(columns, data.prompt_column, PROMPT_NAMES) and _pick(columns, data.response_column, RESPONSE_NAMES):
        return "prompt_response"
    if data.text_column in columns:
        return "text"
    raise TunesmithError(
        f"Cannot tell the data layout from the columns ({', '.join(columns)}). Expected one of: a "
        f"'{data.messages_column}' "
        "column of chat messages; 'instruction' + 'output' (+ optional 'input'); a prompt column "
        f"({'/'.join(PROMPT_NAMES)}) with a response column ({'/'.join(RESPONSE_NAMES)}); or a '{data.text_column}' "
        "column of plain text. Name yours with data.prompt_column / data.response_column / data.messages_column / "
        "data.text_column, or set data.format."
    )


def _pick(columns: list[str], chosen: str | None, names: tuple[str, ...]) -> str | None:
    if chosen is not None:
        return chosen if chosen in columns else None
    return next((n for n in names if n in columns), None)


def read_conversations(path: str, data, role: str) -> Conversations:
    """The file's conversations, read a chunk at a time into a memory-mapped table (`chat_table`)."""
    from .chat_table import conversation_table

    def convert(frame, columns: list[str], fmt: str) -> list[list[dict]]:
        samples = read_usable(frame, lambda rows: _CONVERTERS[fmt](rows, columns, data, path), path)
        if data.system_prompt and fmt != "text":
            system = {"role": "system", "content": data.system_prompt}
            samples = [s if s[0]["role"] == "system" else [system, *s] for s in samples]
        return samples

    settings = {k: getattr(data, k) for k in SHAPING}
    table = conversation_table(path, role, settings, lambda columns: detect_format(columns, data), convert)
    fmt, columns = table.format, table.columns
    answers = [c for c in columns if c.lower() in LABEL_NAMES] if fmt == "text" and data.format == "auto" else []
    return Conversations(table.samples, fmt, path, (data.text_column, answers[0]) if answers else None)


def _column(
    frame: pd.DataFrame, columns: list[str], col: str | None, key: str, path: str, optional=False
) -> list | None:
    if col is None or col not in columns:
        if optional:
            return None
        raise TunesmithError(
            f"{path}: no column '{col}' for data.{key}. Columns found: {', '.join(columns)}. "
            f"Set data.{key} to the right column name."
        )
    return frame[col].tolist()


def _first_row(frame: pd.DataFrame) -> int:
    """The data row a frame starts at: a chunk of a file counts from its own first row."""
    return int(frame.index[0]) if len(frame) and isinstance(frame.index, pd.RangeIndex) else 0


def _texts(values: list, col: str, path: str, allow_empty=False, first: int = 0) -> list[str]:
    """Cells as text; empty cells are an error unless `allow_empty` (then they become "")."""
    bad = [
        first + i + 1
        for i, v in enumerate(values)
        if not (allow_empty and _blank(v)) and (not isinstance(v, str) or not v.strip())
    ]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise TunesmithError(
            f"{path}: {len(bad)} empty or non-text cell(s) in column '{col}' at data row(s) {shown} "
            "(1-based). Remove those rows or fill in the text."
        )
    return ["" if _blank(v) else v for v in values]


def _blank(value) -> bool:
    return (
        value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip())
    )


def _from_pairs(frame, columns, data, path) -> list[list[dict]]:
    p_col, r_col = (
        _pick(columns, data.prompt_column, PROMPT_NAMES),
        _pick(columns, data.response_column, RESPONSE_NAMES),
    )
    first = _first_row(frame)
    prompts = _texts(
        _column(frame, columns, p_col or data.prompt_column, "prompt_column", path), p_col, path, False, first
    )
    responses = _texts(
        _column(frame, columns, r_col or data.response_column, "response_column", path), r_col, path, False, first
    )
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": r}] for p, r in zip(prompts, responses)]


def _from_alpaca(frame, columns, data, path) -> list[list[dict]]:
    outputs = _texts(
        _column(frame, columns, "output", "format (alpaca)", path), "output", path, False, _first_row(frame)
    )
    return [
        [*turns, {"role": "assistant", "content": out}]
        for turns, out in zip(_from_alpaca_prompts(frame, columns, path), outputs)
    ]


def _from_alpaca_prompts(frame, columns, path) -> list[list[dict]]:
    first = _first_row(frame)
    instructions = _texts(
        _column(frame, columns, "instruction", "format (alpaca)", path), "instruction", path, False, first
    )
    inputs = _column(frame, columns, "input", "format (alpaca)", path, optional=True) or [""] * len(frame)
    inputs = _texts(inputs, "input", path, allow_empty=True, first=first)
    return [[{"role": "user", "content": f"{ins}\n\n{inp}" if inp else ins}] for ins, inp in zip(instructions, inputs)]


def _from_text(frame, columns, data, path) -> list[list[dict]]:
    column = _column(frame, columns, data.text_column, "text_column", path)
    texts = _texts(column, data.text_column, path, False, _first_row(frame))
    return [[{"role": "text", "content": t}] for t in texts]


def _from_messages(frame, columns, data, path) -> list[list[dict]]:
    values, first = _column(frame, columns, data.messages_column, "messages_column", path), _first_row(frame)
    return [_check_messages(v, first + i + 1, path) for i, v in enumerate(values)]


def _check_messages(value, row: int, path: str) -> list[dict]:
    where = f"{path}: data row {row}"
    out = _message_list(value, where)
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise TunesmithError(
            f"{where}: the conversation has no non-empty assistant message, so there is nothing to learn from it."
        )
    return out


def _message_list(value, where: str) -> list[dict]:
    """A messages cell as checked turns: a list, a Parquet array, or text of one (CSV/TSV cells)."""
    if hasattr(value, "tolist"):  # parquet gives numpy arrays
        value = value.tolist()
    if isinstance(value, str):
        listed = list_literal(value, MESSAGES_CELL_MAX)  # JSON, or a Python list of dicts as pandas' to_csv writes it
        if listed is None:
            try:
                listed = json.loads(value)
            except json.JSONDecodeError as err:
                raise TunesmithError(
                    f"{where}: the 'messages' cell is not valid JSON ({err.msg} at column {err.colno})."
                ) from None
            except RecursionError:
                raise TunesmithError(
                    f"{where}: the 'messages' cell is JSON nested too deeply to be messages."
                ) from None
        value = listed
    if not isinstance(value, list) or not value:
        raise TunesmithError(f'{where}: \'messages\' must be a non-empty list of {{"role", "content"}} objects.')
    return checked_turns(value, where)


def checked_turns(value: list, where: str) -> list[dict]:
    """Each message a {role, content} of a known role with text; copied, so nothing else of the cell is kept."""
    out = []
    for turn, m in enumerate(value, start=1):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise TunesmithError(
                f'{where}, message {turn}: expected {{"role": one of {sorted(ROLES)}, "content": text}}, got '
                f"{m!r:.120}."
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def prompts_of(frame: pd.DataFrame, data, path: str, column: str | None = None) -> list:
    """The prompts of a file to answer (`tunesmith generate`), read as the run read its data: `column` when given
    (a messages column holds message lists, any other one text), else the run's messages column, Alpaca's
    instruction (+ input, joined as in training), the run's prompt column or a usual prompt name, or `text`. A
    conversation that ends with an assistant turn is answered from the turns before it, as evaluation does."""
    columns = list(map(str, frame.columns))
    if column is None:
        if data.messages_column in columns:
            column = data.messages_column
        elif "instruction" in columns:
            return [s[0]["content"] for s in _from_alpaca_prompts(frame, columns, path)]
        else:
            column = _pick(columns, data.prompt_column, PROMPT_NAMES) or ("text" if "text" in columns else None)
    if column is None or column not in columns:
        raise TunesmithError(
            f"{path}: no prompt column{f' {column!r}' if column else ''}. Columns found: {', '.join(columns)}. "
            "Pass --prompt-column NAME."
        )
    if column in (data.messages_column, "messages"):
        return [_prompt_turns(v, i + 1, path) for i, v in enumerate(frame[column].tolist())]
    return _texts(frame[column].tolist(), column, path)


def _prompt_turns(value, row: int, path: str) -> list[dict]:
    turns = _message_list(value, f"{path}: data row {row}")
    return turns[:-1] if turns[-1]["role"] == "assistant" and len(turns) > 1 else turns


_CONVERTERS = {"messages": _from_messages, "prompt_response": _from_pairs, "alpaca": _from_alpaca, "text": _from_text}


def load_generation(data, seed: int) -> GenerationData:
    """Read train/validation/test; carve a seeded validation split when none is given."""
    import random

    if data.filter:
        from ..errors import TunesmithError

        raise TunesmithError(
            "data.filter selects rows of classification data; for generation data, filter the file itself."
        )
    train = read_conversations(data.train, data, "data.train")
    warnings = []
    if data.min_answer_support:
        given, train.samples = len(train), supported_samples(train, data.min_answer_support)
        log.info(
            f"data.min_answer_support={data.min_answer_support}: {given - len(train)} of {given} training rows left "
            "out (their answers' words mostly not in their prompts)"
        )
    if data.max_train_samples and data.max_train_samples < len(train):
        picked = random.Random(seed).sample(range(len(train)), data.max_train_samples)  # as sampling the rows picks
        train.samples = take(train.samples, picked)
    if data.validation:
        validation = read_conversations(data.validation, data, "data.validation")
    else:
        kept, held = carve_validation(train.samples, seed, data.validation_split, data.train, "sample")
        validation = Conversations(held, train.format, f"{data.train} (validation split)")
        train = Conversations(kept, train.format, data.train, train.unread)
    test = read_conversations(data.test, data, "data.test") if data.test else None
    if data.max_eval_samples:
        for split in (validation, test):
            if split is not None:
                split.samples = seeded_subset(split.samples, data.max_eval_samples, seed)
    evaluation, eval_name = (test, "test") if test else (validation, "validation")
    return GenerationData(train, validation, evaluation, eval_name, warnings)


def supported_samples(train: Conversations, least: float) -> Sequence[list[dict]]:
    """The conversations whose last answer has at least `least` of its content words and numbers in the turns
    before it (data.min_answer_support); an answer without content words is kept."""
    from ..errors import TunesmithError
    from .support import support_share

    if train.format == "text":
        raise TunesmithError(
            "data.min_answer_support measures answers against their prompts; plain text has no prompt."
        )
    samples, source = train.samples, train.source

    def share(sample: list[dict]) -> float | None:
        answer = sample[-1]["content"] if sample[-1]["role"] == "assistant" else ""
        return support_share(answer, "\n".join(m["content"] for m in sample[:-1] if m["role"] != "assistant"))

    kept = take(samples, [i for i, s in enumerate(samples) if (found := share(s)) is None or found >= least])
    if not kept:
        raise TunesmithError(
            f"data.min_answer_support={least}: none of the {len(samples)} training answers in {source} has that share "
            "of its words in its prompt; lower the setting."
        )
    return kept


def carve_validation(items: Sequence, seed: int, share: float, source: str, unit: str) -> tuple[Sequence, Sequence]:
    """(training items, a seeded `share` of them held out for validation, in file order)."""
    import random

    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(order) * share))
    if len(order) - n_val < 1:
        raise TunesmithError(f"{source}: only {len(order)} {unit}(s); need at least 2 to carve a validation split.")
    held = set(order[:n_val])
    return take(items, [i for i in range(len(items)) if i not in held]), take(items, sorted(held))


def seeded_subset(items: Sequence, n: int, seed: int) -> Sequence:
    """At most `n` of the items, a seeded sample kept in file order."""
    import random

    if len(items) <= n:
        return items
    return take(items, sorted(random.Random(seed).sample(range(len(items)), n)))
