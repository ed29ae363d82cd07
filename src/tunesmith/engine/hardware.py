"""What the hardware runs fast: picks the precision for `train.precision: auto`."""

import os
import time
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


# bf16 autocast pays on a CPU only where its matrix products run well over fp32's speed: the casts, softmax,
# norms and optimizer do not get faster. A MiniLM-sized block (two Linear layers and a GELU, forward and backward)
# ran 2.0-2.3x faster under bf16 on an AMD EPYC with AVX512-BF16, whose whole MiniLM training step then ran
# 1.34-1.41x faster at the same accuracy; on a Xeon with AVX512-BF16 but no AMX the whole step ran at 0.65x.
BF16_MIN_BLOCK_SPEEDUP = 1.5


def cpu_has_fast_bf16() -> bool:
    """True where bf16 training is faster than fp32 on this CPU: always with AMX tiles (Intel Sapphire Rapids and
    later); with AVX512-BF16 alone when the block above, measured here once, runs BF16_MIN_BLOCK_SPEEDUP faster
    (kept per CPU and torch version in the cache); never without either (bf16 is emulated, ~100x
    slower)."""
    flags = cpu()[1]
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and bf16_block_speedup() >= BF16_MIN_BLOCK_SPEEDUP


@lru_cache(maxsize=1)
def bf16_block_speedup() -> float:
    """fp32 time / bf16-autocast time of a MiniLM-sized block's training step on this CPU (~1 s, once per
    machine: later processes read the cached figure, so `auto` does not change between runs)."""
    import hashlib
    import json

    from ..paths import cache_dir

    # no thread count in the key: the processes of one `--nproc` run (fewer threads each) must decide alike
    key = "\x00".join([cpu()[0], " ".join(sorted(cpu()[1])), torch.__version__])
    path = cache_dir() / "hardware" / f"bf16-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    # under torchrun, local rank 0 measures and the others wait for its figure: every process must decide alike
    waits = 60 if os.environ.get("LOCAL_RANK", "0") != "0" else 0
    for attempt in range(waits + 1):
        saved = _saved_speedup(path)
        if saved is not None:
            return saved
        if attempt < waits:
            time.sleep(1)
    speedup = _measure_bf16_block()
    try:  # whole or absent: another process may be writing the same figure
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"speedup": speedup, "cpu": cpu()[0], "torch": torch.__version__}))
        partial.replace(path)
    except OSError:  # a read-only cache measures again next time; the decision is the same
        pass
    return speedup


def _saved_speedup(path: Path) -> float | None:
    import json

    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved["speedup"] if isinstance(saved, dict) and isinstance(saved.get("speedup"), float) else None


def _measure_bf16_block(tokens: int = 1024, steps: int = 5) -> float:
    import statistics

    with torch.random.fork_rng(devices=[]):  # a run's seeded draws must not depend on whether this ran first
        torch.manual_seed(0)
        block = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
        x = torch.randn(tokens, 384)

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(x)
        out.float().square().mean().backward()
        return time.perf_counter() - start

    times = {False: [], True: []}
    for i in range(steps + 2):  # interleaved, so drift hits both; the first two rounds warm up
        for bf16 in times:
            took = step(bf16)
            if i >= 2:
                times[bf16].append(took)
    return round(statistics.median(times[False]) / statistics.median(times[True]), 3)


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
