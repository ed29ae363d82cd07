"""What the hardware runs fast: picks the precision for `train.precision: auto`."""

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu() -> tuple[str, frozenset[str]]:
    """(model name, flags) as /proc/cpuinfo reports them (the platform's name and no flags where it cannot be read).

    TUNESMITH_ASSUME_CPU_FLAGS (space-separated flags) replaces the flags: the test suite's bf16 lane sets
    `amx_bf16` so that `auto` takes the bf16 path on machines without AMX."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    lines = info.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    assumed = os.environ.get("TUNESMITH_ASSUME_CPU_FLAGS")
    return name or platform.processor() or platform.machine(), frozenset(flags if assumed is None else assumed.split())


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX tiles for bf16 (Intel Sapphire Rapids and later). AVX512-BF16 alone is not enough:
    on such a Xeon (no AMX) a MiniLM training step under bf16 autocast ran at 0.65x its fp32 speed (the casts
    cost more than the dot products save), and without either, bf16 matmuls are emulated (~100x slower)."""
    return "amx_bf16" in cpu()[1]


def resolve_precision(requested: str) -> str:
    """'auto' -> 'bf16' where it is fast (recent GPUs, CPUs with AMX), else 'fp32'."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def accelerate_precision(precision: str) -> str:
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def process_state():
    """Accelerate's view of the processes. On a machine without GPUs it must be told so (cpu=True), or a
    torchrun launch is not recognised as distributed and every process trains alone."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(cfg, precision: str):
    """The Accelerator for a training loop: mixed precision, accumulation, and the distributed engine.

    Launched with several processes (`--nproc`, torchrun, accelerate launch) it is data-parallel:
    gloo on CPUs, NCCL on GPUs; `train.distributed: fsdp | deepspeed` shards the model on GPUs instead.
    """
    from accelerate import Accelerator

    from ..errors import TunesmithError

    engine, kwargs = getattr(cfg, "distributed", "ddp"), {}
    if engine != "ddp" and not torch.cuda.is_available():
        raise TunesmithError(
            f"train.distributed: {engine} shards the model across GPUs, and this machine has none. "
            "Use ddp (the default): on CPUs, `--nproc N` runs data-parallel over gloo."
        )
    if engine == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin()
    elif engine == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise TunesmithError("train.distributed: deepspeed needs the deepspeed package: pip install deepspeed.")
        from accelerate.utils import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=cfg.grad_accum)
    process_state()
    _fresh_accelerate_state()
    return Accelerator(
        mixed_precision=accelerate_precision(precision),
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not torch.cuda.is_available(),
        **kwargs,
    )


def _fresh_accelerate_state() -> None:
    """Accelerate keeps one process-wide state and refuses a second Accelerator with other settings ("already
    initialized and cannot be changed"): after a bf16 run, a Trainer, or a user's own Accelerator. Each run
    starts from a clean one (the process group, PartialState, is kept); `own_accelerate_state` puts back
    what was there before."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


@contextmanager
def own_accelerate_state():
    """Run a tunesmith run, then give Accelerate's shared state back as the caller had it, so notebooks can
    run recipe after recipe (any precision) beside their own Accelerate or Trainer code."""
    from accelerate.state import AcceleratorState, GradientState

    saved = dict(AcceleratorState._shared_state), dict(GradientState._shared_state)
    try:
        yield
    finally:
        for cls, state in zip((AcceleratorState, GradientState), saved):
            cls._shared_state.clear()
            cls._shared_state.update(state)
