"""Write a DataFrame back in the format its file name asks for (predictions keep the input's format)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import TunesmithError
from .readers import SUFFIXES


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt in ("csv", "tsv"):
            frame.to_csv(path, index=False, sep="," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        elif fmt == "json":
            frame.to_json(path, orient="records", force_ascii=False, indent=1)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            raise TunesmithError(f"Cannot write {path}: unsupported extension '{path.suffix}'. Use one of: {', '.join(sorted(SUFFIXES))}.")
    except OSError as err:
        raise TunesmithError(f"Cannot write {path}: {err.strerror}.") from None
