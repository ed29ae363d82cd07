"""Runs started from the dashboard (`tunesmith ui --allow-train`): the ordinary `tunesmith train` in a child
process, writing an ordinary run folder; the dashboard only starts, watches and stops it.

The recipe text is checked (the strict schema) before anything starts; the run's folder must not exist yet,
so a run started here never replaces one. The recipe and the console output are kept in RUNS_DIR/.ui/NAME/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from ..errors import TunesmithError
from ..recipe import load_recipe
from .folders import SEGMENT

JOBS_DIR = ".ui"  # a leading dot: never listed as a run
# Stop sends SIGINT. A dashboard started in the background (`&` in a script, a test runner's worker) has SIGINT
# ignored, and its children inherit that: this tells the child `tunesmith train` to take SIGINT again.
STOPPABLE_ENV = "TUNESMITH_STOP_ON_SIGINT"
MAX_RUNNING = 2


class Jobs:
    def __init__(self, root: Path, workdir: Path):
        self.root, self.workdir = root, workdir  # workdir: where a recipe's relative paths point
        self.running: dict[str, subprocess.Popen] = {}
        # the routes run in worker threads and on the event loop at once: a page load reaping a child that a Stop
        # had just waited for could find it gone mid-reap (a KeyError: that page failed)
        self._lock = threading.RLock()

    def start(self, name: str, recipe_text: str) -> dict:
        if not isinstance(name, str) or not SEGMENT.match(name):
            raise TunesmithError("Name the run with letters, digits, '.', '_' or '-' (no '/', not starting with '.').")
        with self._lock:
            return self._start(name, recipe_text)

    def _start(self, name: str, recipe_text: str) -> dict:
        self._reap()
        if len(self.running) >= MAX_RUNNING:
            raise TunesmithError(f"{MAX_RUNNING} runs started here are still training; stop one or wait.")
        if (self.root / name).exists() or (self.root / JOBS_DIR / name).exists():
            raise TunesmithError(f"{name} already exists in {self.root}; choose another name.")
        try:
            raw = yaml.safe_load(recipe_text)
        except yaml.YAMLError as err:
            raise TunesmithError(f"The recipe is not YAML: {str(err).splitlines()[0]}") from None
        except RecursionError:  # PyYAML composes nested collections recursively
            raise TunesmithError("The recipe is YAML nested too deeply to be a recipe.") from None
        if not isinstance(raw, dict):
            raise TunesmithError("The recipe must be a YAML mapping (model:, data:, ...).")
        raw.pop("output", None)  # the run goes where the dashboard puts it
        load_recipe(raw)  # the strict schema, so a typo fails here and not in the child
        own = self.root / JOBS_DIR / name
        own.mkdir(parents=True)
        (own / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        with (own / "console.log").open("wb") as console:
            child = subprocess.Popen(
                [sys.executable, "-m", "tunesmith", "train", str(own / "recipe.yaml"), "-o", str(self.root / name)],
                cwd=self.workdir,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1", STOPPABLE_ENV: "1"},
            )
        self.running[name] = child
        return {"name": name, "pid": child.pid}

    def stop(self, name: str) -> dict:
        """Ctrl-C for the run: it stops at once and is marked interrupted (`tunesmith train --resume` continues)."""
        with self._lock:
            self._reap()
            child = self.running.get(name)
        if child is None:
            raise TunesmithError(f"{name} is not a run started from this dashboard that is still training.")
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=60)  # outside the lock: the pages keep loading while the run winds down
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        with self._lock:
            self.running.pop(name, None)
        return {"name": name, "stopped": True, "exit_code": child.returncode}

    def console(self, name: str, max_bytes: int = 20_000) -> str:
        if not SEGMENT.match(name):
            return ""
        path = self.root / JOBS_DIR / name / "console.log"
        if not path.is_file():
            return ""
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - max_bytes))
            return handle.read().decode("utf-8", errors="replace")

    def list(self) -> list[str]:
        with self._lock:
            self._reap()
            return sorted(self.running)

    def close(self) -> None:
        for name in self.list():
            try:
                self.stop(name)
            except TunesmithError:  # it ended on its own meanwhile
                pass

    def _reap(self) -> None:
        for name, child in list(self.running.items()):
            if child.poll() is not None:
                self.running.pop(name, None)
