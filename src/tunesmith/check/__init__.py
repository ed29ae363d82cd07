"""Pre-flight data check: everything about the data that would make a run fail or learn nothing,
found before a single step is paid for, and reported all at once rather than one error per attempt.

`check_recipe` looks at every dataset a recipe trains on (its data, each stage's, each experience's,
a domain corpus) and returns a report: errors (training would fail or learn nothing) and warnings
(it would train, but look at this), with the figures behind them. `tunesmith data check` prints it;
`tunesmith train` runs it first, stops on errors and hands it to the run directory.
"""

from .common import Report
from .recipe import check_recipe

__all__ = ["Report", "check_recipe"]
