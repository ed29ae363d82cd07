"""Where tunesmith keeps what it can rebuild: converted models, Hub dataset splits, in-memory tables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith")
