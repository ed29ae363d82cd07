"""The run directory: what a run writes, and how later commands find it."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import RunPruned, TunesmithError

RUN_FILE = "run.json"  # status: running | finished | failed
METRICS_FILE = "metrics.json"
LOG_FILE = "train_log.jsonl"
CONTINUAL_FILE = "continual.json"  # a continual run's versions; "current" names the one at its top
RECIPE_FILE = "recipe.yaml"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"  # LoRA runs of decoders: the adapter alone (export --merge builds a full model)
MERGED_DIR = "merged"
# the base line's linear head as plain numbers (never a pickle): the base model answers with it (predict.load_base)
BASE_HEAD_FILE = "base_head.json"


def default_dir(recipe_name: str) -> Path:
    return Path("runs") / f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"


# What a run writes at its top level. --overwrite deletes these names and nothing else: a file the user
# put beside them stays. seed-<n>/ folders are matched by prefix.
RUN_ENTRIES = (
    RUN_FILE,
    METRICS_FILE,
    LOG_FILE,
    RECIPE_FILE,
    MODEL_DIR,
    ADAPTER_DIR,
    MERGED_DIR,
    "report.md",
    "plots",
    "data_check.md",
    "data_check.json",
    "checkpoint.pt",
    "stages",
    "direct",
    "versions",
    CONTINUAL_FILE,
    "generations.jsonl",
    BASE_HEAD_FILE,
    "tensorboard",
    f".{MODEL_DIR}.partial",
)  # exports/: only the exports this run wrote (runs/exports.py)
IGNORED = {".DS_Store", ".gitkeep"}  # folders users create by hand often hold these


def create(run_dir: str | Path, recipe_yaml: str, overwrite: bool, files: dict[str, str] | None = None) -> Path:
    """A new run directory: a new or empty folder, or (with overwrite) a finished or dead run's folder.

    A folder holding anything else is refused: tunesmith never replaces a file it did not write (a
    recipe received from someone else may name any folder in output.dir). `files`: name -> text written
    beside the recipe (the data check's report)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TunesmithError(f"{run_dir} exists and is not a folder.")
    if (run_dir / RUN_FILE).exists():
        status = read_status(run_dir)
        if not overwrite:
            raise TunesmithError(
                f"{run_dir} already holds a run ({status}).{_resume_hint(run_dir, status)} Choose another -o "
                f"folder, or pass "
                "--overwrite (output.overwrite: true) to replace it."
            )
        if status == "running":
            raise TunesmithError(
                f"{run_dir}: a run is still writing there (process {read_json(run_dir / RUN_FILE).get('pid')} "
                "is alive); --overwrite never replaces a live run. Stop it first, or choose another -o folder."
            )
    elif run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in IGNORED)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise TunesmithError(
                f"{run_dir} is not empty ({shown}) and is not a tunesmith run directory; tunesmith never "
                "writes over files it did not create. Choose a new or empty folder with -o (or output.dir)."
            )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _clear_run(
            run_dir, run_identity(run_dir)
        )  # an overwritten run's files (and checkpoint) must never mix with this one's
        (run_dir / LOG_FILE).write_text("", encoding="utf-8")
        (run_dir / RECIPE_FILE).write_text(recipe_yaml, encoding="utf-8")
        for name, text in (files or {}).items():
            (run_dir / name).write_text(text, encoding="utf-8")
    except OSError as err:
        raise TunesmithError(f"Cannot write the run directory {run_dir}: {err.strerror}.") from None
    set_status(run_dir, "running", run_id=uuid.uuid4().hex)
    return run_dir


def run_identity(run_dir: Path) -> str:
    """The id that proves a file was written for this run (exports carry it); older runs have none: their path."""
    run_id = read_json(Path(run_dir) / RUN_FILE).get("run_id")
    return run_id if isinstance(run_id, str) and run_id else f"path:{Path(run_dir).resolve()}"


def _clear_run(run_dir: Path, run_id: str) -> None:
    import shutil

    from .exports import clear_exports

    clear_exports(run_dir, run_id)
    for entry in run_dir.iterdir():
        if entry.name in RUN_ENTRIES or entry.name.startswith("seed-") or entry.name.startswith(".checkpoint.pt."):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def reopen(run_dir: str | Path, recipe_yaml: str) -> Path:
    """An unfinished run directory to continue in (`--resume`), started with the same recipe."""
    run_dir = Path(run_dir)
    status = check_resumable(run_dir)
    saved = run_dir / RECIPE_FILE
    if not saved.is_file() or saved.read_text(encoding="utf-8") != recipe_yaml:
        raise TunesmithError(
            f"--resume: the recipe differs from the one {run_dir} was started with ({saved}). Resume with "
            f"the same recipe and overrides (or none: `tunesmith train --resume {run_dir}`), or start a new run "
            f"directory."
        )
    set_status(run_dir, "running", resumed=True, was=status)
    return run_dir


def check_resumable(run_dir: Path) -> str:
    """The status of a run that `--resume` can continue, or a clear error (checked before any data is read)."""
    status = read_status(run_dir)
    if status is None:
        raise TunesmithError(f"{run_dir} is not a tunesmith run directory (no {RUN_FILE}); there is nothing to resume.")
    if status == "damaged":
        raise TunesmithError(
            f"{run_dir / RUN_FILE} is damaged ({json_problem(run_dir / RUN_FILE)}); the run cannot be "
            "resumed safely. Start it again (--overwrite replaces it)."
        )
    if status == "finished":
        raise TunesmithError(
            f"{run_dir}: the run already finished; there is nothing to resume. Use `tunesmith eval` or "
            "`predict` on it, or train again with another -o folder."
        )
    if status == "running":
        raise TunesmithError(
            f"{run_dir}: the run is still going (process {read_json(run_dir / RUN_FILE).get('pid')} is "
            "alive). Stop it first, or wait for it to finish."
        )
    return status


def resumable(run_dir: Path) -> bool:
    """An unfinished run that left a checkpoint to continue from."""
    from ..engine.checkpoint import CHECKPOINT_FILE

    return read_status(run_dir) in ("interrupted", "failed") and (Path(run_dir) / CHECKPOINT_FILE).is_file()


class RunDir:
    """A run directory being written. `with RunDir.open(recipe, output_dir, overwrite) as run:` creates it (or,
    resuming, reopens it) and gives `run.path`; leaving the block records the run finished and drops its
    checkpoint (a finished run's model folder is the result), and an exception records it failed or
    interrupted, with why, before it goes on up. Under several processes rank 0 alone writes the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    @contextmanager
    def open(cls, recipe, output_dir, overwrite: bool, resume: bool = False, files: dict[str, str] | None = None):
        from accelerate.utils import broadcast_object_list

        from ..engine import checkpoint
        from ..engine.hardware import own_accelerate_state, process_state
        from ..recipe import dump_recipe
        from .tracked import log_outcome, tracked_run

        state = process_state()
        target = [Path(output_dir or recipe.output.dir or default_dir("run"))]
        if state.num_processes > 1:
            # rank 0's choice: a default name holds the time, which ranks may disagree on
            broadcast_object_list(target)
        run = cls(target[0])
        if state.is_main_process:
            if resume:
                reopen(run.path, dump_recipe(recipe))
            else:
                create(run.path, dump_recipe(recipe), overwrite or recipe.output.overwrite, files)
        state.wait_for_everyone()
        try:
            with own_accelerate_state(), tracked_run(recipe, run.path, state.is_main_process) as tracking:
                yield run
                log_outcome(tracking, run.path, read_json(run.path / METRICS_FILE))
        except KeyboardInterrupt:
            if state.is_main_process:
                set_status(run.path, "interrupted", error="stopped by Ctrl-C")
            raise
        except RunPruned as err:
            if state.is_main_process:
                set_status(run.path, "pruned", error=str(err))
                checkpoint.clear(run.path)
            raise
        except BaseException as err:
            if state.is_main_process:
                set_status(run.path, "failed", error=f"{type(err).__name__}: {err}")
            raise
        state.wait_for_everyone()
        if state.is_main_process:
            set_status(run.path, "finished")
            checkpoint.clear(run.path)


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """metrics.json, with the process's peak memory so far (every run reports it)."""
    metrics["memory"] = peak_memory()
    write_json(run_dir / METRICS_FILE, metrics)


def peak_memory() -> dict:
    """Peak resident memory of this process so far (Linux/macOS), and the GPU's peak allocation if one was used."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)}
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def set_status(run_dir: Path, status: str, **extra) -> None:
    """run.json: the status, and while running the process (pid and start time), so a killed run reads as
    interrupted."""
    payload = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    if "run_id" not in payload and isinstance(run_id := read_json(run_dir / RUN_FILE).get("run_id"), str):
        payload["run_id"] = run_id  # the run keeps its identity through every status
    if status == "running":
        payload.update(pid=os.getpid(), host=socket.gethostname(), started=_process_start(os.getpid()))
    try:
        write_json(run_dir / RUN_FILE, payload)
    except OSError:
        if status == "running":
            raise
        # disk full: a new file cannot be made, but rewriting the small one in place usually still fits
        with (run_dir / RUN_FILE).open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(payload))


STATUSES = ("running", "finished", "failed", "interrupted", "pruned")


def read_status(run_dir: Path) -> str | None:
    """finished | failed | interrupted | running | damaged, or None for a folder that is not a run.

    A run whose process died without saying so (SIGKILL, power loss, the OOM killer) still reads
    "running" in its file; it is reported as interrupted when that process is gone from this machine
    (or its pid now belongs to another process). An unreadable run.json reads as damaged."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    info = read_json(path)
    status = info.get("status")
    if status not in STATUSES:
        return "damaged"
    if status == "running" and (
        info.get("pid") is None
        or info.get("host") == socket.gethostname()
        and not _alive(info["pid"], info.get("started"))
    ):
        return "interrupted"
    return status


def _resume_hint(run_dir: Path, status: str | None) -> str:
    hint = f" `tunesmith train --resume {run_dir}` continues it." if status in ("interrupted", "failed") else ""
    if status == "interrupted" and not read_json(run_dir / RUN_FILE).get("error"):
        # no Ctrl-C and no error recorded: the process was killed, most often by the system running out of memory
        hint += (
            " If the system stopped it (out of memory: 'Killed', exit 137), lower train.batch_size or "
            "train.max_length, or "
            "set train.memory_budget_gb to what the machine can spare."
        )
    return hint


def this_process() -> dict:
    """Who is writing now: with the start time, the pid names one process even after it is reused."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid())}


def process_alive(info) -> bool:
    """Whether the process `this_process()` described is still running (one on another machine is taken as alive)."""
    if not isinstance(info, dict):
        return False
    return info.get("host") != socket.gethostname() or _alive(info.get("pid"), info.get("started"))


def _process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot, Linux): with the pid it names one process, even
    after the pid has been reused by another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, started=None) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if started is not None and _process_start(pid) not in (None, started):
        return False  # the pid was reused: the run's own process is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False), encoding="utf-8")
        tmp.replace(path)  # atomic: readers never see half a file
    except OSError as err:
        tmp.unlink(missing_ok=True)  # never leave an empty .tmp behind (disk full)
        raise OSError(err.errno, err.strerror, str(path)) from None


def _finite(value):
    """NaN and infinity become null: strict JSON readers (and people) must not meet `Infinity` in metrics.json."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_yaml(path: Path) -> dict:
    """A YAML mapping file (the saved recipe) as a dict; {} when absent; an error when damaged."""
    import yaml

    if not path.is_file():
        return {}
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise TunesmithError(
            f"{path} is damaged ({type(err).__name__}); it is not the recipe tunesmith saved."
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TunesmithError(
            f"{path} is damaged: it holds a YAML {type(value).__name__}, not the recipe mapping tunesmith saved."
        )
    return value


def read_json(path: Path) -> dict:
    """A JSON object file as a dict; {} when absent, unreadable (cut short by a crash) or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, RecursionError, OSError):
        return {}
    return value if isinstance(value, dict) else {}


def json_problem(path: Path) -> str | None:
    """Why a JSON object file cannot be used ('missing', 'damaged: ...'), or None when it is fine."""
    if not path.is_file():
        return "missing"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError) as err:
        return f"damaged ({type(err).__name__}: cut short or not JSON)"
    return None if isinstance(value, dict) else f"damaged (a JSON {type(value).__name__}, not an object)"


def _runs_inside(folder: Path, shown: int = 5) -> list[str]:
    """The run folders directly inside `folder` (a runs root passed where one run goes), a few named."""
    if not folder.is_dir():
        return []
    try:
        found = sorted(str(p) for p in folder.iterdir() if (p / RUN_FILE).is_file())
    except OSError:
        return []
    return found[:shown] + ([f"{len(found) - shown} more"] if len(found) > shown else [])


def open_finished(run_dir: str | Path) -> Path:
    """A run directory that finished training, or a clear error."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        inside = _runs_inside(run_dir)
        raise TunesmithError(
            f"{run_dir} is not a tunesmith run directory (no {RUN_FILE}). Pass the folder given to `tunesmith "
            "train -o`" + (f"; it holds runs: pass one of them ({', '.join(inside)})." if inside else ".")
        )
    status = read_status(run_dir)
    if status == "damaged":
        raise TunesmithError(
            f"{run_dir / RUN_FILE} is damaged ({json_problem(run_dir / RUN_FILE)}), so whether the run "
            "finished is unknown. Train it again, or restore the folder from a copy."
        )
    if status != "finished":
        raise TunesmithError(
            f"{run_dir}: the run has not finished (status: {status}); its model is not ready to use."
            f"{_resume_hint(run_dir, status)}"
        )
    return run_dir


def save_model(run_dir: Path, model, tokenizer) -> Path:
    """Plain Hugging Face format: LoRA adapters are merged so transformers alone can load it. A full disk leaves no
    half-written model that later commands would take for the result."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    target = run_dir / MODEL_DIR

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        write_json(folder / "labels.json", {"labels": labels})

    try:
        swap_in(target, fill)
    except Exception as err:  # noqa: BLE001  (OSError, or safetensors' own error type for the same full disk)
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:160]
        raise TunesmithError(
            f"Cannot save the model to {target}: {reason}. Free some disk space (a model needs about "
            f"{_size_mb(model)} MB) and train again."
        ) from None
    return target


def swap_in(target: Path, fill) -> None:
    """`fill(folder)` builds a folder beside `target`, which then replaces it: readers find the old folder or the new
    one, never half of one (a kill or a full disk midway leaves only the partial folder, removed next time)."""
    import shutil

    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fill(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(partial, target)


def _size_mb(model) -> int:
    return round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20)


def load_saved_model(folder: Path, load):
    """`load(folder)` for a model a run saved, with a missing or damaged folder as a clear error: it is local
    (no Hub lookup when a file is gone), and whatever transformers, safetensors or torch raise for a
    truncated file, an empty config or a planted pickle becomes one message."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise TunesmithError(
            f"{folder}: the run's saved model is missing (no {folder.name}/config.json). It was deleted or "
            "moved; train the run again, or restore the folder from a copy."
        )
    try:
        return load(str(folder))
    except TunesmithError:
        raise
    except Exception as err:  # noqa: BLE001  (many libraries, many types: a damaged folder is one message)
        reason = " ".join(str(err).split())[:200]
        raise TunesmithError(
            f"{folder}: the run's saved model cannot be loaded ({type(err).__name__}: {reason}). The folder "
            "is damaged or was changed after training; train the run again, or restore it from a copy."
        ) from None
