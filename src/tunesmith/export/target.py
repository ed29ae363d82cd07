"""Where an export goes: a new or empty folder, or an earlier export of the same run (proven by its marker).

Exports are passed around and unpacked into folders people already use; tunesmith never writes over a
file it did not write, so anything else in the folder stops the export before it starts."""

from __future__ import annotations

from pathlib import Path

from ..errors import TunesmithError
from ..runs.exports import owned_names, read_marker, stale_staging

IGNORED = {".DS_Store", ".gitkeep"}


def prepare_target(target: Path, run_id: str) -> tuple[list[str], dict | None]:
    """Make `target` ready; return the names an earlier export of this run left there and its marker. Those files
    are replaced only once the new export is complete, so a killed export leaves the earlier one usable."""
    if target.is_symlink():
        raise TunesmithError(
            f"{target} is a link (to {target.resolve()}); tunesmith writes exports into real folders only. "
            "Pass the folder itself with -o."
        )
    if target.exists() and not target.is_dir():
        raise TunesmithError(f"{target} exists and is not a folder; choose another -o.")
    if not target.is_dir() or not any(p.name not in IGNORED for p in target.iterdir()):
        target.mkdir(parents=True, exist_ok=True)
        return [], None
    marker = read_marker(target)
    if marker is None:
        shown = ", ".join(sorted(p.name for p in target.iterdir())[:5])
        raise TunesmithError(
            f"{target} is not empty ({shown}) and is not a tunesmith export; tunesmith never writes over "
            "files it did not create. Choose a new or empty folder with -o."
        )
    if marker["run_id"] != run_id:
        raise TunesmithError(
            f"{target} holds an export of another run ({marker.get('run') or 'unknown'}); tunesmith replaces "
            "only an export of the same run. Choose a new or empty folder with -o."
        )
    stale_staging(target, marker)
    return owned_names(marker), marker
