"""Experiment trackers (MLflow, TensorBoard, W&B, Trackio, ...) through Accelerate's tracker classes.

A tracked run is a scope: `tracked(...)` starts one run in every tracker the recipe names, and a scope
opened inside another (a seed of a multi-seed run, a stage, a continual experience) becomes a child run
(MLflow nested run; a TensorBoard sub-folder). The loop and the session log to whichever scope is
current, so nothing below needs to carry the trackers around. Only the main process logs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..errors import TunesmithError
from ..recipe import dotted

log = logging.getLogger(__name__)

# report_to name -> the package it needs (what `pip install` takes). Accelerate's own names.
PACKAGES = {
    "mlflow": "mlflow",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "trackio": "trackio",
    "aim": "aim",
    "comet_ml": "comet_ml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "clearml": "clearml",
}
TENSORBOARD_DIR = "tensorboard"  # inside the run folder: `tensorboard --logdir RUN/tensorboard`

_current: ContextVar[Tracking | None] = ContextVar("tunesmith_tracking", default=None)


def check_available(names: list[str]) -> None:
    """Accelerate skips a tracker whose package is missing without a word; a recipe that asked for it fails here."""
    missing = [n for n in names if importlib.util.find_spec(PACKAGES[n].split(".")[0]) is None]
    if missing:
        raise TunesmithError(
            f"train.report_to names {', '.join(missing)}, which is not installed: "
            f"pip install {' '.join(PACKAGES[n] for n in missing)}"
        )


class Tracking:
    """One run in each tracker. `log` and `log_artifacts` do nothing when the recipe named no tracker."""

    def __init__(self, trackers: list, label: str = ""):
        self.trackers, self.label = trackers, label

    def log(self, values: dict, step: int | None = None) -> None:
        numbers = {k: v for k, v in values.items() if _is_number(v)}
        for tracker in self.trackers:
            # MLflow's own queue, as HF Trainer's callback uses it: a write to a database or a server per step
            # would otherwise hold up training; the run's end waits for the queue to drain
            extra = {"synchronous": False} if tracker.name == "mlflow" else {}
            tracker.log(numbers, step=step, **extra)

    def log_artifacts(self, paths: list[Path]) -> None:
        """Files (report, plots, metrics) to trackers that keep files (MLflow); the others have no such store."""
        for tracker in self.trackers:
            if hasattr(tracker, "log_artifact"):
                for path in paths:
                    tracker.log_artifact(str(path))

    def finish(self, failed: bool) -> None:
        for tracker in reversed(self.trackers):
            tracker.finish()
            if failed and tracker.name == "mlflow" and getattr(tracker, "active_run", None):
                from mlflow.tracking import MlflowClient

                MlflowClient().set_terminated(tracker.active_run.info.run_id, status="FAILED")


def current() -> Tracking:
    """The innermost tracked run, or one that logs nowhere."""
    return _current.get() or Tracking([])


@contextmanager
def tracked(
    names: list[str], experiment: str, run_name: str, tags: dict, events_dir: Path, config: dict, main: bool = True
) -> Iterator[Tracking]:
    """A tracked run for one run folder (or one experience); a child run when another is open.
    `events_dir`: where file-based trackers (TensorBoard) write; `main`: False on the other processes."""
    parent = _current.get()
    if not names or not main:
        token = _current.set(Tracking([], run_name))  # other processes and untracked runs log nowhere
        try:
            yield _current.get()
        finally:
            _current.reset(token)
        return
    check_available(names)
    nested = parent is not None and bool(parent.trackers)
    label = f"{parent.label}/{run_name}" if nested else run_name
    trackers = [_make(name, experiment, label, tags, events_dir, nested) for name in names]
    for tracker in trackers:
        tracker.start()
        tracker.store_init_configuration(_params(config, tracker.name))
    tracking = Tracking(trackers, label)
    token = _current.set(tracking)
    failed = True
    try:
        yield tracking
        failed = False
    finally:
        _current.reset(token)
        tracking.finish(failed)


def _make(name: str, experiment: str, label: str, tags: dict, events_dir: Path, nested: bool):
    """Accelerate's tracker for `name`, set up to write next to the run: TensorBoard events in the run folder,
    MLflow wherever MLFLOW_TRACKING_URI points (MLflow's local default otherwise), W&B offline unless logged in."""
    from accelerate import tracking as acc

    tags = {str(k): str(v) for k, v in tags.items()}
    if name == "mlflow":
        return acc.MLflowTracker(experiment_name=experiment, run_name=label, tags=tags, nested_run=nested)
    if name == "tensorboard":
        return acc.TensorBoardTracker(run_name=events_dir.name, logging_dir=events_dir.parent)
    if name == "wandb":
        import os

        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"  # offline first: `wandb sync` uploads later
        return acc.WandBTracker(experiment, name=label, tags=[f"{k}:{v}" if v else k for k, v in tags.items()])
    cls = acc.LOGGER_TYPE_TO_CLASS[name]
    return cls(experiment, events_dir) if cls.requires_logging_directory else cls(experiment)


def _params(config: dict, tracker: str) -> dict:
    """The recipe flattened to dotted keys (train.lr); TensorBoard's hparams take numbers, text and booleans."""
    flat = dotted(config)
    if tracker == "tensorboard":
        return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in flat.items()}
    return flat


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
