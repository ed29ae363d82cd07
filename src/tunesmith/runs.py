"""The run directory: what a run writes, and how later commands find it."""

from __future__ import annotations

import json
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
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists() and not overwrite:
        raise TunesmithError(
            f"{run_dir} already holds a run. Choose another -o folder, or pass --overwrite (output.overwrite: true) to replace it.")
    if run_dir.exists() and not run_dir.is_dir():
        raise TunesmithError(f"{run_dir} exists and is not a folder.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / LOG_FILE).write_text("", encoding="utf-8")
        (run_dir / RECIPE_FILE).write_text(recipe_yaml, encoding="utf-8")
    except OSError as err:
        raise TunesmithError(f"Cannot write the run directory {run_dir}: {err.strerror}.") from None
    set_status(run_dir, "running")
    return run_dir


def run_in(recipe, output_dir, overwrite: bool, work) -> tuple[Path, dict]:
    """Create the run directory, call `work(run_dir)` -> metrics, and record finished or failed (with why)."""
    from .recipe import dump_recipe
    run_dir = create(output_dir or recipe.output.dir or default_dir("run"), dump_recipe(recipe),
                     overwrite or recipe.output.overwrite)
    try:
        metrics = work(run_dir)
    except BaseException as err:
        set_status(run_dir, "failed", error=f"{type(err).__name__}: {err}")
        raise
    set_status(run_dir, "finished")
    return run_dir, metrics


def set_status(run_dir: Path, status: str, **extra) -> None:
    payload = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    write_json(run_dir / RUN_FILE, payload)


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
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def open_finished(run_dir: str | Path) -> Path:
    """A run directory that finished training, or a clear error."""
    run_dir = Path(run_dir)
    status_file = run_dir / RUN_FILE
    if not status_file.is_file():
        raise TunesmithError(f"{run_dir} is not a tunesmith run directory (no {RUN_FILE}). Pass the folder given to `tunesmith train -o`.")
    status = json.loads(status_file.read_text(encoding="utf-8")).get("status")
    if status != "finished":
        raise TunesmithError(f"{run_dir}: the run has not finished (status: {status}); its model is not ready to use.")
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
