"""The run directory: what a run writes, and how later commands find it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import TunesmithError

RUN_FILE = "run.json"        # status: running | finished | failed
METRICS_FILE = "metrics.json"
LOG_FILE = "train_log.jsonl"
RECIPE_FILE = "recipe.yaml"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"      # LoRA runs of decoders: the adapter alone (export --merge builds a full model)
MERGED_DIR = "merged"


def default_dir(recipe_name: str) -> Path:
    return Path("runs") / f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def create(run_dir: str | Path, recipe_yaml: str, overwrite: bool) -> Path:
    from . import checkpoint
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists() and not overwrite:
        status = read_status(run_dir)
        raise TunesmithError(
            f"{run_dir} already holds a run ({status}).{_resume_hint(run_dir, status)} Choose another -o folder, or pass --overwrite "
            "(output.overwrite: true) to replace it.")
    if run_dir.exists() and not run_dir.is_dir():
        raise TunesmithError(f"{run_dir} exists and is not a folder.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / LOG_FILE).write_text("", encoding="utf-8")
        (run_dir / RECIPE_FILE).write_text(recipe_yaml, encoding="utf-8")
        checkpoint.clear(run_dir)  # an overwritten run's checkpoint must never be resumed into this one
        _write_data_check(run_dir)
    except OSError as err:
        raise TunesmithError(f"Cannot write the run directory {run_dir}: {err.strerror}.") from None
    set_status(run_dir, "running")
    return run_dir


def _write_data_check(run_dir: Path) -> None:
    from . import datacheck_report
    report = datacheck_report.PENDING.get()
    if report is not None:
        datacheck_report.write(run_dir, report)
        datacheck_report.PENDING.set(None)  # the run's own file; stage and seed runs inside it do not repeat it


def reopen(run_dir: str | Path, recipe_yaml: str) -> Path:
    """An unfinished run directory to continue in (`--resume`), started with the same recipe."""
    run_dir = Path(run_dir)
    status = check_resumable(run_dir)
    saved = run_dir / RECIPE_FILE
    if not saved.is_file() or saved.read_text(encoding="utf-8") != recipe_yaml:
        raise TunesmithError(f"--resume: the recipe differs from the one {run_dir} was started with ({saved}). Resume with "
                             f"the same recipe and overrides (or none: `tunesmith train --resume {run_dir}`), or start a new run directory.")
    set_status(run_dir, "running", resumed=True, was=status)
    return run_dir


def check_resumable(run_dir: Path) -> str:
    """The status of a run that `--resume` can continue, or a clear error (checked before any data is read)."""
    status = read_status(run_dir)
    if status is None:
        raise TunesmithError(f"{run_dir} is not a tunesmith run directory (no {RUN_FILE}); there is nothing to resume.")
    if status == "finished":
        raise TunesmithError(f"{run_dir}: the run already finished; there is nothing to resume. Use `tunesmith eval` or "
                             "`predict` on it, or train again with another -o folder.")
    if status == "running":
        raise TunesmithError(f"{run_dir}: the run is still going (process {read_json(run_dir / RUN_FILE).get('pid')} is "
                             "alive). Stop it first, or wait for it to finish.")
    return status


def resumable(run_dir: Path) -> bool:
    """An unfinished run that left a checkpoint to continue from."""
    from .checkpoint import CHECKPOINT_FILE
    return read_status(run_dir) in ("interrupted", "failed") and (Path(run_dir) / CHECKPOINT_FILE).is_file()


def run_in(recipe, output_dir, overwrite: bool, work, resume: bool = False) -> tuple[Path, dict]:
    """Create (or, resuming, reopen) the run directory, call `work(run_dir)` -> metrics, and record
    finished or failed (with why). A finished run keeps no checkpoint: its model folder is the result."""
    from accelerate.utils import broadcast_object_list

    from . import checkpoint
    from .hardware import process_state
    from .recipe import dump_recipe
    state = process_state()  # several processes (--nproc, torchrun): rank 0 alone writes the run directory
    target = [Path(output_dir or recipe.output.dir or default_dir("run"))]
    if state.num_processes > 1:
        broadcast_object_list(target)  # rank 0's choice (a default name holds the time, which ranks may disagree on)
    run_dir = target[0]
    if state.is_main_process:
        reopen(run_dir, dump_recipe(recipe)) if resume else create(run_dir, dump_recipe(recipe), overwrite or recipe.output.overwrite)
    state.wait_for_everyone()
    try:
        metrics = work(run_dir)
    except KeyboardInterrupt:
        if state.is_main_process:
            set_status(run_dir, "interrupted", error="stopped by Ctrl-C")
        raise
    except BaseException as err:
        if state.is_main_process:
            set_status(run_dir, "failed", error=f"{type(err).__name__}: {err}")
        raise
    state.wait_for_everyone()
    if not state.is_main_process:
        return run_dir, metrics
    if isinstance(metrics, dict):
        metrics["memory"] = peak_memory()
        if (run_dir / METRICS_FILE).is_file():
            write_json(run_dir / METRICS_FILE, {**read_json(run_dir / METRICS_FILE), "memory": metrics["memory"]})
    set_status(run_dir, "finished")
    checkpoint.clear(run_dir)
    return run_dir, metrics


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
    """run.json: the status, and while running the process, so a killed run reads as interrupted."""
    payload = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    if status == "running":
        payload.update(pid=os.getpid(), host=socket.gethostname())
    write_json(run_dir / RUN_FILE, payload)


def read_status(run_dir: Path) -> str | None:
    """finished | failed | interrupted | running, or None for a folder that is not a run.

    A run whose process died without saying so (SIGKILL, power loss) still reads "running" in its
    file; it is reported as interrupted when that process is gone from this machine."""
    info = read_json(Path(run_dir) / RUN_FILE)
    status = info.get("status")
    if status == "running" and (info.get("pid") is None or info.get("host") == socket.gethostname() and not _alive(info["pid"])):
        return "interrupted"
    return status


def _resume_hint(run_dir: Path, status: str | None) -> str:
    return f" `tunesmith train --resume {run_dir}` continues it." if status in ("interrupted", "failed") else ""


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)  # atomic: readers never see half a file


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_yaml(path: Path) -> dict:
    """A YAML file (the saved recipe) as a dict; {} when absent."""
    import yaml
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_json(path: Path) -> dict:
    """A JSON file as a dict; {} when absent or unreadable (a run file cut short by a crash)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, OSError):
        return {}


def open_finished(run_dir: str | Path) -> Path:
    """A run directory that finished training, or a clear error."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise TunesmithError(f"{run_dir} is not a tunesmith run directory (no {RUN_FILE}). Pass the folder given to `tunesmith train -o`.")
    status = read_status(run_dir)
    if status != "finished":
        raise TunesmithError(f"{run_dir}: the run has not finished (status: {status}); its model is not ready to use."
                             f"{_resume_hint(run_dir, status)}")
    return run_dir


def save_model(run_dir: Path, model, tokenizer) -> Path:
    """Plain Hugging Face format: LoRA adapters are merged so transformers alone can load it."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    target = run_dir / MODEL_DIR
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    write_json(target / "labels.json", {"labels": labels})
    return target
