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


class RunPruned(Exception):
    """A sweep stopped this run after an epoch: its validation metric was worse than earlier trials' median.
    Not an error: the run folder is marked `pruned` and the sweep goes on."""
