"""`tunesmith sweep`: an Optuna study over a recipe's keys, each trial an ordinary run folder.

The study lives in a database (SQLite in the sweep folder by default, or any `--storage` URL Optuna supports), so
J worker processes on one machine, or workers on several machines, share it, and a sweep that was stopped
continues where it was: trials whose process is gone are marked failed and their values tried again.
Trials read the training and validation data only; the test file is read once, by the final evaluation
(report.py), after the search.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunPruned, TunesmithError
from ..recipe import Recipe, dump_recipe, with_absolute_paths
from .space import objective_metric, search_space, suggest, trial_recipe

log = logging.getLogger(__name__)
TRIALS_DIR = "trials"
SWEEP_RECIPE = "sweep.yaml"  # the recipe the sweep searches: a folder holding another one is not reused
STUDY_DB = "study.db"
HEARTBEAT_S, GRACE_S = 30, 120  # a trial not heard from for GRACE_S (its machine died) is failed and retried


@dataclass
class Setup:
    recipe: Recipe  # absolute paths, hub data as files; the sweep section included
    out_dir: Path
    storage: str
    study_name: str
    trials: int
    timeout: float | None


def prepare(recipe: Recipe, out_dir: Path, trials: int | None, storage: str | None, timeout: float | None) -> Setup:
    """Check the recipe and the folder (a new one, or this recipe's own sweep to continue) before any trial."""
    from ..data.hub import materialize

    recipe = materialize(with_absolute_paths(recipe))
    if recipe.stages or recipe.experiences:
        raise TunesmithError("tunesmith sweep searches single runs; staged and continual recipes are not supported.")
    out_dir = Path(out_dir)
    marker = out_dir / SWEEP_RECIPE
    text = dump_recipe(recipe)
    if marker.is_file():
        before = marker.read_text(encoding="utf-8")
        if _parsed(before) != _parsed(text):  # the same keys in another order are the same recipe
            changed = next(
                (f"{a.strip()} -> {b.strip()}" for a, b in zip(before.splitlines(), text.splitlines()) if a != b),
                "its length",
            )
            raise TunesmithError(
                f"{out_dir} holds a sweep of another recipe ({marker}; first change: {changed}); give a new -o "
                "folder, or the same recipe to continue that sweep."
            )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise TunesmithError(f"{out_dir} already holds files that are not a tunesmith sweep; give a new -o folder.")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(text, encoding="utf-8")
    n = trials or (recipe.sweep.trials if recipe.sweep else 12)
    url = storage or f"sqlite:///{(out_dir / STUDY_DB).resolve()}"
    return Setup(recipe, out_dir, url, out_dir.resolve().name, n, timeout)


def _parsed(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return None  # a damaged marker matches no recipe


def open_study(setup: Setup, worker: int = 0):
    """The shared study (created on first use), with this worker's sampler and the median pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tunesmith says what each trial does, once
    metric, direction = objective_metric(setup.recipe)
    storage = optuna.storages.RDBStorage(setup.storage)
    # random first trials, then TPE; workers draw different random starts
    sampler = optuna.samplers.TPESampler(
        seed=setup.recipe.train.seed + 1000 * worker, n_startup_trials=max(3, setup.trials // 3)
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3) if _pruning(setup.recipe) else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=setup.study_name,
        storage=storage,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.user_attrs.get("metric") not in (None, metric):
        raise TunesmithError(f"the study {setup.study_name} optimises {study.user_attrs['metric']}, not {metric}.")
    study.set_user_attr("metric", metric)
    return study


def _pruning(recipe: Recipe) -> bool:
    return recipe.sweep.pruning if recipe.sweep else True


def work(setup: Setup, worker: int = 0, threads: int | None = None) -> None:
    """Ask, train and tell trials until the study has `setup.trials` finished (complete or pruned) ones."""
    if threads:  # a worker process of its own: its threads, and its messages shown as the parent's are
        import torch

        from ..log import show

        torch.set_num_threads(threads)
        show()
    study = open_study(setup, worker)
    space = search_space(setup.recipe)
    deadline = time.time() + setup.timeout if setup.timeout else math.inf
    while time.time() < deadline:
        with _locked(setup.out_dir / ".ask.lock"):
            _reclaim(study)
            done, running, failed = _counts(study)
            if done >= setup.trials or done + running >= setup.trials:
                return
            if failed >= max(3, setup.trials):
                raise TunesmithError(
                    f"{failed} trials failed; see run.json in the folders under {setup.out_dir / TRIALS_DIR}."
                )
            trial = study.ask()
            from ..runs.rundir import this_process

            trial.set_user_attr("process", this_process())
        _run_trial(setup, study, trial, space)


def _run_trial(setup: Setup, study, trial, space: dict) -> None:
    import optuna

    values = suggest(trial, space)
    run_dir = setup.out_dir / TRIALS_DIR / str(trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    metric, _ = objective_metric(setup.recipe)
    log.info(f"sweep: trial {trial.number}: " + ", ".join(f"{k}={_shown(v)}" for k, v in values.items()))
    try:
        with _heartbeat(trial), _pruned_by(trial, metric, _pruning(setup.recipe)):
            from ..pipeline import run

            result = run(trial_recipe(setup.recipe, values), output_dir=run_dir)
    except RunPruned as err:
        log.info(f"sweep: trial {trial.number} pruned ({err})")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except KeyboardInterrupt:
        study.enqueue_trial(values)  # tried again when the sweep continues
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except Exception as err:  # noqa: BLE001  (a trial's values may break a run: the sweep goes on without them)
        log.warning(f"sweep: trial {trial.number} failed: {type(err).__name__}: {err}")
        trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    value = kept_value(result.metrics, metric)
    trial.set_user_attr("epochs", result.metrics["train"].get("epochs"))
    trial.set_user_attr("runtime_s", result.metrics["train"].get("runtime_s"))
    study.tell(trial, value)
    log.info(f"sweep: trial {trial.number}: validation {metric} {value:.4f}")


def kept_value(metrics: dict, metric: str) -> float:
    """The validation metric of the epoch the run kept."""
    history = metrics["train"]["history"]
    entry = next((h for h in history if h["epoch"] == metrics["train"]["best_epoch"]), history[-1])
    if metric not in entry:
        raise TunesmithError(
            f"sweep.metric: '{metric}' is not among this run's validation metrics "
            f"({', '.join(k for k in entry if k != 'epoch')})."
        )
    return float(entry[metric])


@contextlib.contextmanager
def _pruned_by(trial, metric: str, pruning: bool):
    """Report each epoch's validation metric to the study; stop the run when the pruner says so."""
    from ..engine.loop import observe_epochs

    def observe(epoch: int, metrics: dict) -> None:
        if metric not in metrics:
            return  # kept_value says which metrics there are once the run ends
        trial.report(float(metrics[metric]), epoch)
        if pruning and trial.should_prune():
            raise RunPruned(f"epoch {epoch}: validation {metric} {metrics[metric]:.4f} is worse than the median")

    with observe_epochs(observe):
        yield


@contextlib.contextmanager
def _heartbeat(trial):
    """The trial's `beat` attribute, renewed every HEARTBEAT_S while it trains: how a worker on another machine
    tells a trial in progress from one whose machine died."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is retried; a dead database ends the trial anyway
                trial.set_user_attr("beat", time.time())

    trial.set_user_attr("beat", time.time())
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _reclaim(study) -> None:
    """Trials left running by a process that is gone (a stopped sweep on this machine), or not heard from for
    GRACE_S (another machine's): failed, and their values queued to be tried again."""
    import optuna

    from ..runs.rundir import process_alive

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        process, beat = trial.user_attrs.get("process"), trial.user_attrs.get("beat")
        gone = process is not None and not process_alive(process)
        silent = isinstance(beat, (int, float)) and time.time() - beat > GRACE_S
        if gone or silent:
            log.info(f"sweep: trial {trial.number} was left unfinished; its values are tried again")
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            if trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def _counts(study) -> tuple[int, int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)  # one read of the storage for all three counts
    states = [t.state for t in trials]
    done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    # failed by an error in the run (not stopped and retried): values that break the recipe
    failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
    return done, states.count(TrialState.RUNNING), failed


@contextlib.contextmanager
def _locked(path: Path):
    """One worker of this machine at a time between counting the trials and asking for one (no overshoot)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_workers(setup: Setup, jobs: int) -> None:
    """`jobs` worker processes sharing the study; each gets an equal share of the cores for its threads. Workers
    are fresh interpreters (`python -m tunesmith.sweep.worker`): nothing of this process (a notebook, a script
    without a main guard) is imported again."""
    open_study(setup)  # made once here: workers creating one database at the same moment collide
    if jobs <= 1:
        return work(setup)
    import json
    import subprocess
    import sys

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // jobs)
    spec = setup.out_dir / "worker.json"
    spec.write_text(json.dumps(_as_json(setup)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "tunesmith.sweep.worker", str(spec), "{index}", str(threads)]
    procs = [subprocess.Popen([part.format(index=i) for part in command], env=env) for i in range(jobs)]
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: let them mark their trials for a retry
        for proc in procs:
            proc.wait(timeout=60)
        raise
    bad = [code for code in codes if code]
    if bad:
        raise TunesmithError(f"{len(bad)} sweep worker(s) stopped with an error (exit codes {bad}); see the log above.")


def _as_json(setup: Setup) -> dict:
    return {
        "recipe": setup.recipe.model_dump(mode="json", exclude_unset=True),
        "out_dir": str(setup.out_dir),
        "storage": setup.storage,
        "study_name": setup.study_name,
        "trials": setup.trials,
        "timeout": setup.timeout,
    }


def from_json(raw: dict) -> Setup:
    return Setup(
        Recipe.model_validate(raw["recipe"]),
        Path(raw["out_dir"]),
        raw["storage"],
        raw["study_name"],
        int(raw["trials"]),
        raw["timeout"],
    )


def _shown(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
