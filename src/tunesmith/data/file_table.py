"""An Arrow table on disk made from a data file chunk by chunk, memory-mapped when a run reads it, cached under a
name the caller makes from the file's bytes and the settings that shape the rows (`columns.content_key`).

What the readers of nested rows share (conversations, tagged words): the table is written to a temporary file
moved into place once the whole file is read, so a killed run or a bad row leaves no table, and a file that fails
a check writes nothing (its errors are found again, with the same words, each time it is read). The rows left out
under `train.data_check: warn` are said again when a later run opens the table.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .bad_rows import noting

log = logging.getLogger(__name__)


def cached_rows(
    path: Path,
    schema,
    chunks: Callable[[], Iterator[list]],
    summary: Callable[[], dict],
    sound: Callable[[dict], bool],
):
    """(the table memory-mapped, what was read beside it): from `path` when it is there and sound, else written
    there first from `chunks()` (lists of arrays in `schema`'s order), `summary()` saved beside it. `sound(meta)`:
    whether a saved summary holds what the caller wrote (a damaged one is rebuilt, not trusted)."""
    opened = _open(path, schema.names, sound)
    if opened is None:
        _write(path, schema, chunks, summary)
        opened = _open(path, schema.names, sound)
    else:
        for note in opened[1]["notes"]:  # what the first read left out, said again
            log.warning(note)
    return opened


def _meta_file(table: Path) -> Path:
    return table.with_suffix(".meta.json")


def _open(path: Path, names: list[str], sound: Callable[[dict], bool]):
    """(the table, its meta), or None where there is none or a damaged one (dropped and rebuilt)."""
    import pyarrow as pa

    if not path.is_file():
        return None
    try:
        meta = json.loads(_meta_file(path).read_text(encoding="utf-8"))
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        notes = meta["notes"]
        if table.num_rows != meta["rows"] or table.column_names != names or not sound(meta):
            raise ValueError("not this table")
        if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
            raise ValueError("not this table's notes")
        return table, meta
    except Exception:  # noqa: BLE001  (a damaged cache file, whatever Arrow says of it, is rebuilt, not trusted)
        path.unlink(missing_ok=True)
        return None


def _write(path: Path, schema, chunks, summary) -> None:
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    rows = 0
    try:
        with noting() as notes, pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for arrays in chunks():
                batch = pa.record_batch(arrays, schema=schema)
                rows += batch.num_rows
                writer.write_batch(batch)
        meta = {**summary(), "rows": rows, "notes": notes}
        _meta_file(path).write_text(json.dumps(meta), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
