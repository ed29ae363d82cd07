"""The one training loop every method shares, with a few hooks for what differs between methods."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..log import progress
from ..models.loading import HEAD_MODULES
from . import checkpoint as ckpt
from . import tracking
from .batching import grouping_window, iterate, length_grouped_batches, row_lengths


@dataclass
class Hooks:
    """What a method plugs into the loop. Only `evaluate` is required."""

    evaluate: Callable[[torch.nn.Module], dict]  # -> validation metrics, once per epoch
    compute_loss: Callable[[torch.nn.Module, dict], torch.Tensor] = lambda model, batch: model(**batch).loss
    before_backward: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. add a regulariser
    after_epoch: Callable[[int, dict], None] | None = None
    default_metric: str = "f1_macro"  # picks the best epoch when the recipe names none
    validation_rows: int = (
        0  # rows behind a share-type metric (accuracy, macro F1): sets how much of its change is noise
    )


# Callables (epoch, validation metrics) every loop in this context calls after each epoch's evaluation: a sweep's
# pruner reads them there, without the methods knowing a sweep exists.
_epoch_observers: ContextVar[tuple] = ContextVar("tunesmith_epoch_observers", default=())


@contextmanager
def observe_epochs(callback: Callable[[int, dict], None]) -> Iterator[None]:
    token = _epoch_observers.set((*_epoch_observers.get(), callback))
    try:
        yield
    finally:
        _epoch_observers.reset(token)


@dataclass
class LoopResult:
    epochs_run: int
    best_epoch: int
    best_metrics: dict
    runtime_s: float
    samples_per_s: float
    tokens_per_s: float
    history: list[dict] = field(default_factory=list)
    scale: dict = field(default_factory=dict)  # processes and the effective batch size (examples per optimizer step)


def optimizer_for(
    model: torch.nn.Module, lr: float, weight_decay: float, head_lr: float | None = None
) -> torch.optim.Optimizer:
    """AdamW; `head_lr` gives a new, randomly initialised head its own (usually higher) rate."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            is_head = head_lr is not None and any(part in HEAD_MODULES for part in name.split("."))
            # Biases and norm weights are not decayed (standard BERT/HF practice).
            groups.setdefault((is_head, p.ndim >= 2), []).append(p)
    param_groups = [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": head_lr if is_head else lr}
        for (is_head, decay), params in groups.items()
    ]
    return torch.optim.AdamW(param_groups, lr=lr, fused=True)  # fused: one kernel per step, CPU and GPU


def run_loop(
    model,
    accelerator,
    rows,
    label_ids,
    cfg,
    lr: float,
    hooks: Hooks,
    pad_id: int,
    log_path: Path,
    checkpoint: Path | None = None,
) -> LoopResult:
    """Train for cfg.epochs with early stopping on cfg.early_stopping; keeps and restores the best weights.

    With `checkpoint`, the loop saves its whole state there every cfg.save_steps optimizer steps and at
    every epoch end, and starts from that state when the file exists (a resumed run).
    """
    lengths = row_lengths(rows)
    procs = accelerator.num_processes
    window = grouping_window(lengths, cfg.batch_size * procs, cfg.seed) if getattr(cfg, "group_by_length", True) else 1
    steps_per_epoch = math.ceil(math.ceil(len(rows) / (cfg.batch_size * procs)) / cfg.grad_accum)
    max_steps = getattr(cfg, "max_steps", None)
    # max_steps bounds the run by optimizer steps, as in the HF Trainer: the epochs it spans, the last partial
    epochs = max_steps / steps_per_epoch if max_steps else cfg.epochs
    total_steps = max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    optimizer = optimizer_for(model, lr, cfg.weight_decay, getattr(cfg, "head_lr", None))
    from transformers import get_scheduler

    kind = getattr(cfg, "lr_scheduler", "linear")
    scheduler = get_scheduler(
        "constant_with_warmup" if kind == "constant" else kind,
        optimizer,
        int(cfg.warmup_ratio * total_steps),
        total_steps,
    )
    # The scheduler stays outside prepare(): Accelerate would step it once per process per step (it
    # assumes each process's data shrank), but total_steps above already counts global batches.
    model, optimizer = accelerator.prepare(model, optimizer)
    stopping = cfg.early_stopping
    state = _State(
        stop_metric=stopping.metric or hooks.default_metric,
        patience=stopping.patience,
        rows=hooks.validation_rows,
        min_epochs=math.ceil(epochs / 2) if stopping.min_epochs == "auto" else stopping.min_epochs,
    )
    pos = {"epoch": 1, "batch": 0, "step": 0, "seen": 0, "tokens": 0, "train_time": 0.0}
    saved = ckpt.load(checkpoint) if checkpoint else None
    if saved:
        _restore(saved, accelerator.unwrap_model(model), optimizer, scheduler, state, pos, log_path)
    log = log_path.open("a", encoding="utf-8") if accelerator.is_main_process else None
    save = _saver(checkpoint, accelerator, model, optimizer, scheduler, state, pos, log)
    tracker = tracking.current()  # the run's experiment trackers (none unless train.report_to names some)
    start, step = time.perf_counter(), pos["step"]
    cap = getattr(cfg, "max_length", None)  # rounded batch widths (fewer shapes) never past what the model takes
    noise = getattr(cfg, "neftune_alpha", None)
    with (
        progress("train", total_steps, step, enabled=accelerator.is_main_process) as bar,
        noisy_embeddings(accelerator.unwrap_model(model), noise),
    ):
        if saved:
            ckpt.set_rng_state(saved["rng"])  # last: everything above may draw random numbers
        for epoch in range(pos["epoch"], math.ceil(epochs) + 1):
            model.train()
            batches = _my_share(
                length_grouped_batches(lengths, cfg.batch_size * procs, seed=cfg.seed + epoch, window=window),
                accelerator,
            )
            skip = pos["batch"] if epoch == pos["epoch"] else 0  # batches a resumed epoch already trained on
            t0 = time.perf_counter()
            for index, batch in enumerate(iterate(rows, batches[skip:], pad_id, label_ids, cap), start=skip + 1):
                if step >= total_steps:
                    break
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.accumulate(model):
                    # the run's precision for the whole loss: a loss that calls the model's inner modules (a
                    # decoder's answer-only LM head) goes around the autocast the prepared model's forward has
                    with accelerator.autocast():
                        loss = hooks.compute_loss(model, batch)
                    if hooks.before_backward:
                        loss = hooks.before_backward(loss)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                pos["seen"] += len(batch["input_ids"])
                masks = [v for k, v in batch.items() if k.endswith("attention_mask")]  # a preference pair: both sides
                pos["tokens"] += sum(int(m.sum()) for m in masks) if masks else batch["input_ids"].numel()
                if accelerator.sync_gradients:
                    step += 1
                    value = loss.item()
                    _check_finite(value, step, epoch, scheduler.get_last_lr()[0], lr)
                    sps = pos["seen"] / (pos["train_time"] + time.perf_counter() - t0)
                    bar.update(step, value, sps)
                    if log and step % cfg.log_every == 0:
                        record = {"loss": value, "lr": scheduler.get_last_lr()[0], "samples_per_s": sps}
                        _write(log, {"step": step, "epoch": epoch, **record})
                        tracker.log({**record, "epoch": epoch}, step=step)
                    if cfg.save_steps and step % cfg.save_steps == 0 and step < total_steps:
                        save(epoch, index, step, pos["train_time"] + time.perf_counter() - t0)
            pos["train_time"] += time.perf_counter() - t0
            with accelerator.autocast():  # scored in the precision it trained in, as base and tuned are
                metrics = hooks.evaluate(accelerator.unwrap_model(model))
            kept = state.update(epoch, metrics, accelerator.unwrap_model(model))
            if log:
                _write(log, {"step": step, "epoch": epoch, "eval": metrics, "best": kept})
                tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
            if hooks.after_epoch:
                hooks.after_epoch(epoch, metrics)
            for observe in _epoch_observers.get():
                observe(epoch, metrics)  # may stop the run (a sweep's pruner raises RunPruned)
            if state.should_stop(epoch) or step >= total_steps:
                break
            save(epoch + 1, 0, step, pos["train_time"])
    if log:
        log.close()
    state.restore(accelerator.unwrap_model(model))
    per_s = accelerator.num_processes / max(pos["train_time"], 1e-9)
    return LoopResult(
        epoch,
        state.best_epoch,
        state.best_metrics,
        time.perf_counter() - start,
        pos["seen"] * per_s,
        pos["tokens"] * per_s,
        state.history,
        {"processes": procs, "effective_batch_size": cfg.batch_size * cfg.grad_accum * procs},
    )


@contextmanager
def noisy_embeddings(model: torch.nn.Module, alpha: float | None) -> Iterator[None]:
    """NEFTune (train.neftune_alpha) for as long as the loop trains, with transformers' own hook: it adds noise
    in train mode only, so the loop's evaluations and the model used afterwards see clean embeddings."""
    if not alpha:
        yield
        return
    from transformers.integrations.neftune import activate_neftune, deactivate_neftune

    handle = activate_neftune(model, alpha)
    try:
        yield
    finally:
        deactivate_neftune(model, handle)


def _check_finite(loss: float, step: int, epoch: int, current_lr: float, peak_lr: float) -> None:
    """A NaN/inf loss means the weights are already broken: stop (the run is marked failed) rather than
    finish training a model that answers every input the same way."""
    if not math.isfinite(loss):
        from ..errors import TunesmithError

        raise TunesmithError(
            f"The training loss became {loss} at optimizer step {step} (epoch {epoch}; learning rate "
            f"{current_lr:.3g}, peak "
            f"train.lr {peak_lr:.3g}). The model's weights diverged, so training stopped and nothing was saved "
            f"as a result. "
            "Lower train.lr (e.g. by 10x), keep train.max_grad_norm on, or use train.precision: fp32."
        )


def _my_share(batches: list[list[int]], accelerator) -> list[list[int]]:
    """Data parallel: every global batch (batch_size x processes) is split across the processes, so N
    processes take the same optimizer steps on the same examples as one process with N times the batch.
    A last batch too small to give every process an example is dropped (all processes agree on it)."""
    procs, rank = accelerator.num_processes, accelerator.process_index
    if procs == 1:
        return batches
    return [b[rank::procs] for b in batches if len(b) >= procs]


def _saver(path: Path | None, accelerator, model, optimizer, scheduler, state: _State, pos: dict, log):
    """save(epoch, batch, step, train_time): the loop's state after `batch` batches of `epoch` (rank 0 writes)."""

    def save(epoch: int, batch: int, step: int, train_time: float) -> None:
        if path is None or not accelerator.is_main_process:
            return
        if log:
            log.flush()
        ckpt.save(
            path,
            {
                "position": {**pos, "epoch": epoch, "batch": batch, "step": step, "train_time": train_time},
                "model": ckpt.trainable_state(accelerator.unwrap_model(model)),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "early_stopping": vars(state),
                "rng": ckpt.rng_state(),
                "log_bytes": log.tell() if log else None,
            },
        )

    return save


def _restore(saved: dict, model, optimizer, scheduler, state: _State, pos: dict, log_path: Path) -> None:
    model.load_state_dict(saved["model"], strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    vars(state).update(saved["early_stopping"])
    pos.update(saved["position"])
    if saved.get("log_bytes") is not None and log_path.is_file():
        with log_path.open("r+b") as handle:  # drop log lines written after the checkpoint: they are redone
            handle.truncate(saved["log_bytes"])


# Metrics that are shares of validation rows; one standard error of such a share is sqrt(p(1 - p) / n).
SHARES = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


class _State:
    """Early stopping and the weights to keep (in memory).

    The weights kept are the latest epoch's unless an earlier epoch scored better on validation by more than the
    metric's noise (one standard error of a share over `rows` validation rows; loss and other metrics: strictly
    better). Picking the top of a few noisy scores picks noise, while a validation drop larger than the noise
    still marks real overfitting (docs/why-defaults.md)."""

    def __init__(self, stop_metric: str, patience: int | None, rows: int = 0, min_epochs: int = 1):
        self.metric, self.patience, self.rows, self.min_epochs = stop_metric, patience, rows, min_epochs
        self.best_value = None  # the top validation value so far; patience counts epochs without a new one
        self.best_epoch, self.best_metrics, self.best_weights = 0, {}, None  # the epoch kept
        self.bad_epochs, self.history = 0, []

    def noise(self) -> float:
        if not self.rows or self.metric not in SHARES or self.best_value is None:
            return 0.0
        p = min(max(self.best_value, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / self.rows)

    def update(self, epoch: int, metrics: dict, model) -> bool:
        """Record an epoch; True when its weights are now the ones kept. Patience counts epochs without a new top."""
        self.history.append({"epoch": epoch, **metrics})
        value, lower, top = metrics[self.metric], self.metric == "loss", self.best_value
        new_top = top is None or (value < top if lower else value > top)
        keep = new_top or (not lower and value >= top - self.noise())
        if new_top:
            self.best_value, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if keep:
            self.best_epoch, self.best_metrics = epoch, metrics
            # Only trainable tensors can change: with LoRA or frozen layers this is a small copy.
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items() if k in trainable}
        return keep

    def should_stop(self, epoch: int) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience and epoch >= self.min_epochs

    def restore(self, model) -> None:
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights, strict=False)


def _write(handle, record: dict) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()
