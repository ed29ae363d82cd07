"""Which files in an export folder tunesmith wrote: its marker, proven by the run's id, never by a file name.

Other tools write an `export.json` too, and users add files beside an export. Only a marker that says
tunesmith wrote it for this very run (the run id in run.json) makes its listed files ours to replace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARKER = "export.json"
STAGING = ".tunesmith-export-"  # the folder a writer fills before its files move in
EXPORTS_DIR = "exports"


def read_marker(folder: Path) -> dict | None:
    """The folder's marker when tunesmith wrote it, else None (absent, damaged, or another tool's export.json)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, a folder, unreadable, not JSON
        return None
    if (
        not isinstance(marker, dict)
        or marker.get("written_by") != "tunesmith"
        or not isinstance(marker.get("run_id"), str)
    ):
        return None
    return marker


def owned_names(marker: dict) -> list[str]:
    """The plain file names the marker records (never a path: even our marker may have been edited)."""
    files = marker.get("files")
    return [f for f in files if plain_name(f)] if isinstance(files, list) else []


def stale_staging(folder: Path, marker: dict) -> None:
    """Remove the staging folder an export killed midway left (the marker names it before it is made)."""
    name = marker.get("staging")
    if plain_name(name) and name.startswith(STAGING):
        shutil.rmtree(folder / name, ignore_errors=True)


def remove_entries(folder: Path, names) -> None:
    for name in names:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def clear_exports(run_dir: Path, run_id: str) -> None:
    """What --overwrite does to exports/: the exports this run wrote go; a file or folder the user added stays."""
    exports = run_dir / EXPORTS_DIR
    if exports.is_symlink() or not exports.is_dir():
        return  # a link the user made is theirs, wherever it leads
    for folder in exports.iterdir():
        marker = read_marker(folder) if folder.is_dir() and not folder.is_symlink() else None
        if marker is None or marker["run_id"] != run_id:
            continue
        stale_staging(folder, marker)
        remove_entries(folder, [*owned_names(marker), MARKER])
        _remove_if_empty(folder)
    _remove_if_empty(exports)


def _remove_if_empty(folder: Path) -> None:
    if not any(folder.iterdir()):
        folder.rmdir()


def plain_name(name) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..", MARKER)
    )
