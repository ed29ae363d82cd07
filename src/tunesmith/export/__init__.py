"""`tunesmith export RUN_DIR --format hf|onnx|gguf`: a finished run as a file a deployment runtime loads.

Which formats fit which runs is data (FITS); each format is one module with a `write(predictor, run_dir,
target, **options) -> dict` that returns what it measured (the parity of the written file). Writers write into a
fresh folder; export_run moves the files into place only when none would replace a file the user kept there."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..errors import TunesmithError
from ..runs import rundir
from ..runs.exports import EXPORTS_DIR, MARKER, STAGING, remove_entries
from .target import prepare_target

# format -> the tasks whose runs it can hold, and what to say when it cannot.
FITS = {
    "hf": {
        "tasks": ("classification", "multi_label", "regression", "token_classification", "generation"),
        "otherwise": "a domain-adaptation run's model/ folder is already a plain Hugging Face model",
    },
    "onnx": {
        "tasks": ("classification", "multi_label", "regression", "token_classification"),
        "otherwise": "ONNX export holds encoder classifiers; for a decoder (generation) run use --format gguf or hf",
    },
    "gguf": {
        "tasks": ("generation",),
        "otherwise": "GGUF holds decoder language models for llama.cpp/Ollama; for a classifier use --format "
        "onnx or hf",
    },
}
FORMATS = tuple(FITS)


def export_run(run_dir: str | Path, fmt: str, output: str | Path | None = None, **options) -> dict:
    """Write RUN_DIR's model in `fmt` into `output` (default RUN_DIR/exports/FORMAT); returns the export record."""
    from ..predict import Predictor, identify

    if fmt not in FITS:
        raise TunesmithError(f"unknown export format '{fmt}'. Formats: {', '.join(FORMATS)}.")
    source, method, task, kind, recipe = identify(run_dir)
    task = "multi_label" if task == "classification" and (recipe.get("data") or {}).get("multi_label") else task
    if method == "few_shot" and kind == "decoder":
        task = "generation" if fmt != "onnx" else "prompted"
    if task not in FITS[fmt]["tasks"]:
        raise TunesmithError(f"{run_dir} is a {task.replace('_', '-')} run ({method}); {FITS[fmt]['otherwise']}.")
    target = Path(output) if output else _default_target(Path(run_dir), fmt)
    run_id = rundir.run_identity(Path(run_dir))
    earlier, marker = prepare_target(target, run_id)
    kept = (
        {p.name for p in target.iterdir()} - set(earlier) - {MARKER}
    )  # the user's own files: left alone, never recorded
    # exports hold full-precision weights (decoders load in fp32 already)
    predictor = Predictor.load(source, **({} if task == "generation" else {"precision": "fp32"}))
    record = {
        "written_by": "tunesmith",
        "run_id": run_id,
        "format": fmt,
        "task": task,
        "method": method,
        "run": str(Path(run_dir).resolve()),
    }
    record.update(
        _write_beside(
            target,
            kept,
            earlier,
            marker or {**record, "files": []},
            lambda out: _writer(fmt)(predictor, source, out, **options),
        )
    )
    record["files"] = sorted(p.name for p in target.iterdir() if p.name not in kept | {MARKER})
    rundir.write_json(target / MARKER, record)
    return {**record, "path": str(target)}


def _default_target(run_dir: Path, fmt: str) -> Path:
    exports = run_dir / EXPORTS_DIR
    if exports.is_symlink():  # a link planted in a run folder must not send files somewhere else
        raise TunesmithError(
            f"{exports} is a link (to {exports.resolve()}), not the run's own folder; tunesmith does not follow it. "
            "Choose where the export goes with -o."
        )
    return exports / fmt


def _write_beside(target: Path, kept: set[str], earlier: list[str], marker: dict, write) -> dict:
    """Run a writer into a fresh folder inside `target`, then move its files in. A name the user kept there stops the
    export before anything of theirs is replaced. The marker names the staging folder and every file of ours before
    anything moves, so an export killed at any point leaves a folder the next export of this run can clean."""
    staging = target / f"{STAGING}{uuid.uuid4().hex[:12]}"
    rundir.write_json(target / MARKER, {**marker, "files": earlier, "staging": staging.name})
    staging.mkdir()
    try:
        record = write(staging)
        new = sorted(p.name for p in staging.iterdir())
        taken = [name for name in new if name in kept]
        if taken:
            raise TunesmithError(
                f"{target} holds {', '.join(taken)}, not from an earlier tunesmith export; tunesmith never "
                "writes over files it did not create. Move them, or choose a new folder with -o."
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _restore(target, marker, earlier)
        raise
    rundir.write_json(target / MARKER, {**marker, "files": sorted(set(earlier) | set(new)), "staging": staging.name})
    for name in new:
        remove_entries(target, [name] if name in earlier else [])  # a folder of ours cannot be replaced in one move
        os.replace(staging / name, target / name)
    remove_entries(target, sorted(set(earlier) - set(new)))
    shutil.rmtree(staging, ignore_errors=True)
    if "loads_with" in record:  # the writer named the folder it wrote into
        record["loads_with"] = record["loads_with"].replace(str(staging), str(target))
    return record


def _restore(target: Path, marker: dict, earlier: list[str]) -> None:
    """A failed export leaves the earlier export's record as it was, or (a first export) no marker at all."""
    if earlier:
        rundir.write_json(target / MARKER, {k: v for k, v in marker.items() if k != "staging"})
    else:
        (target / MARKER).unlink(missing_ok=True)


def _writer(fmt: str):
    if fmt == "hf":
        from .hf import write
    elif fmt == "onnx":
        from .onnx import write
    else:
        from .gguf import write
    return write
