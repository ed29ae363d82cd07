"""Live swaps: a continual run's current version changes (`tunesmith update`, a promoted feedback update,
`tunesmith runs versions --rollback`), and the server follows without a restart.

The new version is loaded beside the old one (in a worker thread: requests go on meanwhile), then the name
points at it in one assignment. A request holds the version it started with to its end, so nothing in flight
fails; the old version's queues are closed once they are idle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..runs import rundir

log = logging.getLogger(__name__)


def run_version(run_dir: Path) -> int:
    """The version a run's model folder holds: a continual run's current version, else 1."""
    current = rundir.read_json(Path(run_dir) / rundir.CONTINUAL_FILE).get("current")
    return current if isinstance(current, int) and not isinstance(current, bool) else 1


class Swapper:
    def __init__(self, served: dict, load, monitor):
        self.served, self.load, self.monitor = served, load, monitor
        self._lock = asyncio.Lock()

    async def check(self) -> list[str]:
        """Swap in every run whose current version is not the one served; returns the names swapped."""
        async with self._lock:  # one load at a time: two reloads of one model would hold three copies
            swapped = []
            for name, run in list(self.served.items()):
                if run_version(run.run_dir) == run.version:
                    continue
                try:
                    fresh = await asyncio.to_thread(self.load, run)
                except Exception as err:  # noqa: BLE001  (a half-written version: keep serving the old one)
                    log.warning(
                        f"{name}: version {run_version(run.run_dir)} did not load ({err}); still serving "
                        f"version {run.version}"
                    )
                    continue
                self.served[name] = fresh
                self.monitor.swaps.labels(name).inc()
                log.warning(f"{name}: now serving version {fresh.version} (was {run.version})")
                asyncio.get_running_loop().create_task(_retire(run))
                swapped.append(name)
            return swapped

    async def watch(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.check()
            except Exception as err:  # noqa: BLE001  (the watcher must outlive one bad read)
                log.warning(f"version check failed: {err}")


async def _retire(run) -> None:
    """Close the old version's queues once the requests that started on it are answered."""
    for _ in range(600):
        if all(b.idle() for b in run.batchers.values()):
            break
        await asyncio.sleep(0.1)
    for batcher in run.batchers.values():
        await batcher.close()
