"""Multi-stage runs (transfer learning, domain adaptation) as one recipe, with a stage-by-stage table.

Each stage is an ordinary run in `stages/<n>-<name>/`, started from the previous stage's weights.
After every stage the model is scored on the final target: a linear probe on its body for stages
that do not yet have the target's head, the real metrics for the last stage. So the report shows
what each stage bought, and `--compare-direct` trains the target alone for the control.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ..engine.metrics import HEADLINE_ALL
from ..recipe import stage_recipe
from ..runs import rundir as runs
from .single import run_single
from .target import Target

log = logging.getLogger(__name__)
STAGES_DIR = "stages"
DIRECT_DIR = "direct"
_KEEP = ("model", "adapter", "merged", "generations.jsonl")  # what predict/eval/chat read from a run


def run_stages(
    recipe, output_dir, overwrite: bool, resume: bool = False, compare_direct: bool = False, files: dict | None = None
) -> tuple[Path, dict]:
    run_dir = Path(output_dir or recipe.output.dir or runs.default_dir("stages"))
    with runs.RunDir.open(recipe, run_dir, overwrite, resume, files) as run:
        metrics = _run_all(recipe, run.path, resume, compare_direct)
    return run.path, metrics


def _run_all(recipe, run_dir: Path, resume: bool, compare_direct: bool) -> dict:
    count = len(recipe.stages)
    final = stage_recipe(recipe, count - 1)
    target = Target(final)
    model_name, entries = recipe.model.name, []
    base = target.evaluate(model_name) if recipe.eval.baseline != "none" else {}
    base_head = target.last_head  # the base model's probe on the target: the staged run's base model answers with it
    if base:
        log.info(f"base on the target: {target.headline(base)}")
    for index, stage in enumerate(recipe.stages):
        sub = stage_recipe(recipe, index, model_name)
        sub.eval.baseline = "none"  # the stage table carries the comparison; no probe per stage run
        sub.train.data_check = "off"  # the whole staged recipe was checked before stage 1
        sub_dir = run_dir / STAGES_DIR / f"{index + 1}-{_slug(stage.name)}"
        log.info(f"stage {index + 1}/{count}: {stage.name} ({sub.method.name})", extra={"rule": True})
        metrics = _run_stage(sub, sub_dir, resume, target)
        model_name = str(handoff(sub_dir, sub.model.name))
        last = index == count - 1
        on_target = metrics["tuned"] if last else target.evaluate(model_name)
        if not last:
            log.info(f"after {stage.name}, on the target: {target.headline(on_target)}")
        entries.append(
            {
                "name": stage.name,
                "method": sub.method.name,
                "task": metrics.get("task"),
                "dir": str(sub_dir.relative_to(run_dir)),
                "own": _headline_metrics(metrics),
                "target": _headline_metrics({"tuned": on_target})["tuned"],
                "target_kind": "final model" if last else target.probe_kind,
            }
        )
    result = {**metrics, "model": recipe.model.name, "base": base, "stages": entries, "target_eval": target.description}
    _copy_outputs(sub_dir, run_dir)
    if base_head:
        runs.write_json(run_dir / runs.BASE_HEAD_FILE, base_head)
    if compare_direct:
        result["direct"] = _direct(final, run_dir / DIRECT_DIR, resume)
    runs.write_metrics(run_dir, result)
    from .stage_report import write_stage_report

    write_stage_report(run_dir, result)
    return result


def _run_stage(sub, sub_dir: Path, resume: bool, target) -> dict:
    if resume and runs.read_status(sub_dir) == "finished":
        log.info(f"{sub_dir.name}: finished earlier, kept (--resume)")
        return runs.read_json(sub_dir / runs.METRICS_FILE)
    # a pre-training stage with task_texts learns from the target's training inputs (TAPT)
    options = {"task_texts": target.train_texts()} if getattr(sub.method, "task_texts", False) else {}
    return run_single(sub, sub_dir, True, resume=runs.resumable(sub_dir) and resume, **options)[1]


def handoff(sub_dir: Path, model_name: str) -> Path:
    """The weights the next stage starts from: the stage's full model (a LoRA adapter is merged first),
    marked with the registry model it derives from so the next stage keeps that model's defaults."""
    from ..models.loading import mark_base

    folder = sub_dir / runs.MODEL_DIR
    if (sub_dir / runs.ADAPTER_DIR).is_dir():
        folder = sub_dir / runs.MERGED_DIR
        if not (folder / "config.json").is_file():
            from ..tasks.generation.predictor import export_merged

            export_merged(sub_dir, folder)
    mark_base(folder, model_name)
    return folder


def _direct(final, direct_dir: Path, resume: bool) -> dict:
    """The control: the target stage alone, from the base model, same seed and budget."""
    log.info("control: the target stage alone from the base model (--compare-direct)", extra={"rule": True})
    final = final.model_copy(deep=True)
    final.eval.baseline = "none"
    final.train.data_check = "off"
    if resume and runs.read_status(direct_dir) == "finished":
        return runs.read_json(direct_dir / runs.METRICS_FILE)["tuned"]
    return run_single(final, direct_dir, True, resume=runs.resumable(direct_dir) and resume)[1]["tuned"]


def _copy_outputs(stage_dir: Path, run_dir: Path) -> None:
    """The final stage's model (and head, generations) at the top of the run: predict/eval/chat use it there."""
    for item in stage_dir.iterdir():
        if item.name in _KEEP or item.suffix == ".json" and item.name not in (runs.RUN_FILE, runs.METRICS_FILE):
            dest = run_dir / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)


def _headline_metrics(metrics: dict) -> dict:
    return {key: {k: v for k, v in (metrics.get(key) or {}).items() if k in HEADLINE_ALL} for key in ("base", "tuned")}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "stage"
