"""Where an export goes: a new or empty folder, or an earlier tunesmith export (marked by export.json).

Exports are passed around and unpacked into folders people already use; tunesmith never writes over a
file it did not write, so anything else in the folder stops the export before it starts."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import TunesmithError

MARKER = "export.json"
IGNORED = {".DS_Store", ".gitkeep"}


def prepare_target(target: Path) -> Path:
    if target.exists() and not target.is_dir():
        raise TunesmithError(f"{target} exists and is not a folder; choose another -o.")
    if target.is_dir() and any(p.name not in IGNORED for p in target.iterdir()):
        if not (target / MARKER).is_file():
            shown = ", ".join(sorted(p.name for p in target.iterdir())[:5])
            raise TunesmithError(f"{target} is not empty ({shown}) and is not a tunesmith export; tunesmith never writes over "
                                 "files it did not create. Choose a new or empty folder with -o.")
        for name in written_before(target):  # an earlier export of ours: its files go, a file the user added stays
            entry = target / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    target.mkdir(parents=True, exist_ok=True)
    return target


def written_before(target: Path) -> list[str]:
    """The plain file names an earlier export recorded (never a path: the marker may come from anyone)."""
    from ..runs.rundir import read_json
    files = read_json(target / MARKER).get("files")
    names = [f for f in files if isinstance(f, str) and f and "/" not in f and "\\" not in f and f not in (".", "..")] \
        if isinstance(files, list) else []
    return names + [MARKER]
