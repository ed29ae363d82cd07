"""The one error type users see: a clear paragraph, never a traceback."""

import difflib


class TunesmithError(Exception):
    """A problem with the user's input or environment, explained in plain words."""


def closest(name: str, choices) -> str | None:
    """The choice that looks most like `name` (for "did you mean"), or None."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices) -> str:
    match = closest(name, choices)
    return f" Did you mean '{match}'?" if match else ""


# columns that name another task's data: said when a classification recipe finds them instead of text and label
_OTHER_TASKS = (
    ({"prompt", "response"}, "prompts and their answers", "generation"),
    ({"messages"}, "conversations", "generation"),
    ({"tokens", "tags"}, "words and their tags", "token_classification"),
    ({"chosen", "rejected"}, "preference pairs", "generation with method: preference"),
)


def other_task(columns) -> tuple[str, str] | None:
    """(what the columns look like, the task that reads them) when they are another task's usual ones."""
    found = {str(c).lower() for c in columns}
    return next(((what, task) for needs, what, task in _OTHER_TASKS if needs <= found), None)


def task_hint(columns) -> str:
    """' The columns look like ...: for that, set task: ...' when the columns are another task's usual ones."""
    hint = other_task(columns)
    return f" The columns look like {hint[0]}: for that, set task: {hint[1]}." if hint else ""


class RunPruned(Exception):
    """A sweep stopped this run after an epoch: its validation metric was worse than earlier trials' median.
    Not an error: the run folder is marked `pruned` and the sweep goes on."""
