"""Where tunesmith keeps what it can rebuild: converted models, Hub dataset splits, in-memory tables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith")


DATA_ROOT_ENV = "TUNESMITH_DATA_ROOT"  # --data-root: where relative data paths (and data.hub mirrors) are looked up


def data_roots() -> list[Path]:
    """The folders of TUNESMITH_DATA_ROOT, in order: one, or several joined by os.pathsep as in PATH (a mirror of Hub
    datasets beside a folder of the team's own files)."""
    return [Path(part) for part in os.environ.get(DATA_ROOT_ENV, "").split(os.pathsep) if part]
