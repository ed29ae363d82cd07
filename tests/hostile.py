"""Builders for hostile inputs shared by the bad-input tests: planted pickles, fake and real run directories."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
from pathlib import Path

import yaml

from tests.conftest import sentiment_rows


class Planted:
    """A pickle that runs code when loaded: it creates `marker`. Loading must refuse it, never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"payload": Planted(marker)}, protocol=2))  # torch.save's protocol
    return path


def toy_recipe(d: Path, **train) -> dict:
    sentiment_rows(40, 0).to_csv(d / "train.csv", index=False)
    return {
        "model": {"name": "tiny-bert"},
        "data": {"train": str(d / "train.csv")},
        "train": {"epochs": 1, "save_steps": 1, **train},
        "eval": {"baseline": "none"},
    }


def fake_run(d: Path, status: str = "finished", task: str = "classification", **extra) -> Path:
    """A run directory with only its bookkeeping files (no model): enough for commands that check them first."""
    run = d / "run"
    run.mkdir(parents=True, exist_ok=True)
    info = {"status": status, **extra}
    if status == "running" and "pid" not in extra:
        from tunesmith.runs.rundir import _process_start

        info.update(pid=os.getpid(), host=socket.gethostname(), started=_process_start(os.getpid()))
    (run / "run.json").write_text(json.dumps(info))
    (run / "recipe.yaml").write_text(
        yaml.safe_dump({"task": task, "model": {"name": "tiny-bert"}, "data": {"train": str(d / "train.csv")}})
    )
    return run


def interrupted_run(d: Path) -> Path:
    """A real run directory cut short after its first checkpoint (status interrupted, checkpoint.pt present)."""
    from tunesmith.recipe import dump_recipe, load_recipe
    from tunesmith.runs.rundir import create, set_status

    recipe = load_recipe(toy_recipe(d))
    run = create(d / "run", dump_recipe(recipe), overwrite=False)
    set_status(run, "interrupted", error="test")
    return run


_FINISHED: dict[str, Path] = {}


def finished_run(d: Path, cache: Path) -> Path:
    """A real finished tiny-bert run, trained once per session and copied into `d/run`."""
    if "run" not in _FINISHED:
        import tunesmith

        source = cache / "finished"
        source.mkdir(parents=True, exist_ok=True)
        tunesmith.run(toy_recipe(source), output_dir=source / "run")
        _FINISHED["run"] = source / "run"
    target = d / "run"
    shutil.copytree(_FINISHED["run"], target)
    sentiment_rows(20, 3).to_csv(d / "x.csv", index=False)
    return target
