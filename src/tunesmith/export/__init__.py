"""`tunesmith export RUN_DIR --format hf|onnx|gguf`: a finished run as a file a deployment runtime loads.

Which formats fit which runs is data (FITS); each format is one module with a `write(predictor, run_dir,
target, **options) -> dict` that returns what it measured (the parity of the written file). Writers write into a
fresh folder; export_run moves the files into place only when none would replace a file the user kept there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import TunesmithError
from ..runs import rundir
from .target import prepare_target

# format -> the tasks whose runs it can hold, and what to say when it cannot.
FITS = {
    "hf": {"tasks": ("classification", "multi_label", "regression", "token_classification", "generation"),
           "otherwise": "a domain-adaptation run's model/ folder is already a plain Hugging Face model"},
    "onnx": {"tasks": ("classification", "multi_label", "regression", "token_classification"),
             "otherwise": "ONNX export holds encoder classifiers; for a decoder (generation) run use --format gguf or hf"},
    "gguf": {"tasks": ("generation",),
             "otherwise": "GGUF holds decoder language models for llama.cpp/Ollama; for a classifier use --format onnx or hf"},
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
    target = prepare_target(Path(output) if output else Path(run_dir) / "exports" / fmt)
    kept = {p.name for p in target.iterdir()}  # the user's own files, left where they are and never recorded as ours
    # exports hold full-precision weights (decoders load in fp32 already)
    predictor = Predictor.load(source, **({} if task == "generation" else {"precision": "fp32"}))
    record = {"format": fmt, "task": task, "method": method, "run": str(Path(run_dir).resolve())}
    record.update(_write_beside(target, kept, lambda out: _writer(fmt)(predictor, source, out, **options)))
    record["files"] = sorted(p.name for p in target.iterdir() if p.name not in kept | {"export.json"})
    rundir.write_json(target / "export.json", record)
    return {**record, "path": str(target)}


def _write_beside(target: Path, kept: set[str], write) -> dict:
    """Run a writer into a fresh folder inside `target`, then move its files in. A name the user kept there (a file
    an earlier export did not record) stops the export before anything of theirs is replaced, whatever the format."""
    staging = Path(tempfile.mkdtemp(prefix=".tunesmith-export-", dir=target))
    try:
        record = write(staging)
        taken = sorted(p.name for p in staging.iterdir() if p.name in kept)
        if taken:
            raise TunesmithError(f"{target} holds {', '.join(taken)}, not from an earlier tunesmith export; tunesmith never "
                                 "writes over files it did not create. Move them, or choose a new folder with -o.")
        for entry in staging.iterdir():
            os.replace(entry, target / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if "loads_with" in record:  # the writer named the folder it wrote into
        record["loads_with"] = record["loads_with"].replace(str(staging), str(target))
    return record


def _writer(fmt: str):
    if fmt == "hf":
        from .hf import write
    elif fmt == "onnx":
        from .onnx import write
    else:
        from .gguf import write
    return write
