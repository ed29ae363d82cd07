"""recipe -> data -> model -> method -> train loop -> evaluate -> run directory. Read top to bottom."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from .runs import rundir as runs
from .engine.batching import tokenize, unknown_only
from .engine.checkpoint import CHECKPOINT_FILE
from .data.classification import load_classification
from .errors import TunesmithError
from .engine.metrics import evaluate_classifier, linear_probe, outcome_warnings
from .methods.head_init import PROBE_FROM_CLASSES, init_head_from_probe
from .engine.hardware import make_accelerator, resolve_precision
from .models.loading import head_is_fresh, load_encoder, load_tokenizer, model_kind, model_spec, resolve_weights
from .recipe import Recipe, load_recipe
from .models.registry import METHODS, default_lr
from .runs.report import write_report
from .engine.loop import run_loop

console = Console(stderr=True)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict


def run(recipe: Recipe | dict | str | Path, output_dir: str | Path | None = None, overwrite: bool = False,
        resume: bool = False, compare_direct: bool = False) -> RunResult:
    """Fine-tune per the recipe; returns the run directory and its metrics (also in metrics.json).

    Staged recipes: `resume` skips stages that finished in `output_dir`; `compare_direct` also trains
    the last stage alone from the base model (the control), reported as `direct`.
    """
    recipe = load_recipe(recipe)
    if resume:
        runs.check_resumable(Path(output_dir or recipe.output.dir or "."))
    else:
        preflight(recipe)
    if resume and not recipe.stages and (recipe.train.seeds > 1 or recipe.method.name == "continual"):
        raise TunesmithError("--resume continues single runs and staged runs; a multi-seed or continual run restarts "
                             "(continual runs grow by versions instead: `tunesmith update`).")
    if recipe.train.seeds > 1:
        from .flows.seeds import run_seeds
        return RunResult(*run_seeds(recipe, output_dir, overwrite, run))
    if recipe.stages:
        from .flows.stages import run_stages
        return RunResult(*run_stages(recipe, output_dir, overwrite, resume, compare_direct))
    if recipe.method.name == "continual":
        from .flows.continual import run_continual
        return RunResult(*run_continual(recipe, output_dir, overwrite))
    if recipe.method.name == "domain_adaptation":
        from .methods.domain_adaptation import run_domain_adaptation
        return RunResult(*run_domain_adaptation(recipe, output_dir, overwrite, resume=resume))
    if recipe.task == "generation":
        from .methods.supervised_generation import run_generation
        return RunResult(*run_generation(recipe, output_dir, overwrite, resume=resume))
    if recipe.method.name == "few_shot":
        from .methods.few_shot import run_few_shot
        return RunResult(*run_few_shot(recipe, output_dir, overwrite, resume))
    method = importlib.import_module(METHODS[recipe.method.name])
    data = load_classification(recipe.data, recipe.train.seed)
    for warning in data.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    weights = resolve_weights(recipe.model.name)
    spec = model_spec(recipe.model.name)
    tokenizer = load_tokenizer(weights)
    enc = encode_classification(data, tokenizer, recipe.train.max_length)
    kind = model_kind(weights, spec)
    lr = recipe.train.lr or default_lr(spec, kind, method.training_mode(recipe, kind))
    return RunResult(*runs.run_in(recipe, output_dir, overwrite, lambda run_dir: _train_and_evaluate(
        recipe, method, data, enc, weights, spec, tokenizer, lr, run_dir, kind), resume=resume))


def preflight(recipe) -> None:
    """The data check before anything is trained: stop on errors (unless train.data_check says otherwise);
    the report goes into the run directory when it is created."""
    if recipe.train.data_check == "off":
        return
    from .check.classification import check_recipe
    from .check.report import PENDING
    report = check_recipe(recipe)
    for warning in report.warnings:
        console.print(f"[yellow]data check:[/] {warning}")
    if report.errors and recipe.train.data_check == "stop":
        listed = "\n".join(f"  - {e}" for e in report.errors)
        raise TunesmithError(f"The data check found {len(report.errors)} problem(s); training would fail or learn nothing:\n"
                             f"{listed}\nFix the data (`tunesmith data check RECIPE` prints the full report), or set "
                             "train.data_check: warn to train anyway.")
    console.print(f"data check: {'OK' if report.ok else f'{len(report.errors)} error(s)'}, {len(report.warnings)} warning(s)")
    PENDING.set(report)


def _train_and_evaluate(recipe, method, data, enc, weights, spec, tokenizer, lr, run_dir: Path, kind: str) -> dict:
    from accelerate.utils import set_seed

    cfg = recipe.train
    precision = resolve_precision(cfg.precision)
    accelerator = make_accelerator(cfg, precision)
    set_seed(cfg.seed)
    base = _baseline(recipe, weights, enc, data, tokenizer.pad_token_id, precision)
    if base:
        console.print(f"base ({base['kind']}): accuracy {base['accuracy']:.4f}, macro-F1 {base['f1_macro']:.4f}")
    model = method.build_model(recipe, weights, spec, data.labels, kind)
    head_init_s = _start_head(recipe, model, weights, enc, data.labels, tokenizer.pad_token_id, precision, kind)
    evaluate = lambda m: evaluate_classifier(  # noqa: E731
        m, enc["validation"], enc["validation_ids"], data.labels, recipe.eval.batch_size, tokenizer.pad_token_id, precision)
    hooks = method.make_hooks(recipe, data.labels, data.train.labels, evaluate)
    result = run_loop(model, accelerator, enc["train"], enc["train_ids"], cfg, lr, hooks, tokenizer.pad_token_id,
                      run_dir / runs.LOG_FILE, checkpoint=run_dir / CHECKPOINT_FILE)
    model = accelerator.unwrap_model(model)
    tuned = evaluate_classifier(model, enc["evaluation"], enc["evaluation_ids"], data.labels, recipe.eval.batch_size,
                                tokenizer.pad_token_id, precision, detail=True)
    metrics = {
        "task": recipe.task, "method": recipe.method.name, "model": recipe.model.name,
        "eval_set": data.eval_name, "eval_size": len(data.evaluation), "labels": data.labels,
        "base": base, "tuned": tuned,
        "train": {"runtime_s": result.runtime_s, "head_init_s": head_init_s, "samples_per_s": result.samples_per_s, "tokens_per_s": result.tokens_per_s,
                  **result.scale,
                  "epochs": result.epochs_run,
                  "best_epoch": result.best_epoch, "lr": lr, "precision": precision,
                  "train_size": len(data.train), "truncated": len(enc["truncated"]), "history": result.history},
        "warnings": data.warnings,
    }
    metrics["outcome_warnings"] = outcome_warnings(metrics)
    for warning in metrics["outcome_warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")
    if accelerator.is_main_process:
        runs.save_model(run_dir, model, tokenizer)
        runs.write_json(run_dir / runs.METRICS_FILE, metrics)
        write_report(run_dir, metrics, data.labels)
    console.print(f"tuned: accuracy {tuned['accuracy']:.4f}, macro-F1 {tuned['f1_macro']:.4f} ({data.eval_name} set)")
    return metrics


def encode_classification(data, tokenizer, max_length: int) -> dict:
    """Tokenize every split once; labels to ids; report truncation instead of cutting silently."""
    label_index = {label: i for i, label in enumerate(data.labels)}
    enc = {}
    for name in ("train", "validation", "evaluation"):
        split = getattr(data, name)
        enc[name], cut = tokenize(tokenizer, split.texts, split.pairs, max_length)
        enc[f"{name}_ids"] = [label_index[label] for label in split.labels]
        if name == "train":
            enc["truncated"] = cut
        unknown = unknown_only(tokenizer, enc[name])
        if unknown:
            console.print(f"[yellow]warning:[/] {unknown} of {len(split)} {name} text(s) hold no token the model's vocabulary "
                          "knows (every piece is the unknown token, e.g. emoji or a script the tokenizer lacks); the model "
                          "sees them all as the same input.")
    if enc["truncated"]:
        cut = enc["truncated"]
        console.print(f"[yellow]warning:[/] {len(cut)} of {len(data.train)} training texts exceed train.max_length={max_length} "
                      f"tokens and were truncated (longest {max(cut)} tokens). Raise train.max_length to keep more.")
    return enc


def _baseline(recipe, weights, enc, data, pad_id, precision) -> dict:
    if recipe.eval.baseline == "none":
        return {}
    encoder = load_encoder(weights)
    base = linear_probe(encoder, enc["train"], enc["train_ids"], enc["evaluation"], enc["evaluation_ids"], data.labels,
                        recipe.eval.batch_size, pad_id, precision, recipe.train.seed)
    return {"kind": "linear probe on the frozen base model's mean-pooled embeddings", **base}


def _start_head(recipe, model, weights, enc, labels, pad_id, precision, kind: str) -> float:
    """LP-FT: a new encoder head starts from a probe on the body's features (see head_init); a head carried
    over from a previous stage with the same labels is already trained and is kept; decoder heads score
    every position, so no probe fits them. Returns the seconds it took."""
    wanted = recipe.method.head_init == "probe" or (recipe.method.head_init == "auto" and len(labels) >= PROBE_FROM_CLASSES)
    if not wanted or kind == "decoder" or not head_is_fresh(weights, labels):
        return 0.0
    start = time.perf_counter()
    fit = init_head_from_probe(model, enc["train"], enc["train_ids"], len(labels), recipe.eval.batch_size, pad_id,
                               precision, recipe.train.seed)
    if fit is not None:
        console.print(f"head: started from a linear probe on the body's features (training accuracy {fit:.4f})")
    return time.perf_counter() - start
