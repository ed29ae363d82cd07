"""`precision: auto` on a CPU: bf16 with AMX, measured where only AVX512-BF16 is present, never elsewhere."""

import json
import os
from pathlib import Path

import pytest
import torch

from tunesmith.engine import hardware


@pytest.fixture
def flags(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))  # each test measures (or not) afresh

    def assume(text: str, speedup: float | None = None):
        monkeypatch.setenv("TUNESMITH_ASSUME_CPU_FLAGS", text)
        hardware.cpu.cache_clear()
        hardware.bf16_block_speedup.cache_clear()
        if speedup is not None:
            monkeypatch.setattr(hardware, "_measure_bf16_block", lambda: speedup)

    yield assume
    hardware.cpu.cache_clear()
    hardware.bf16_block_speedup.cache_clear()


@pytest.mark.parametrize(
    "cpu_flags, measured, precision",
    [
        ("avx2 amx_bf16 avx512_bf16", 0.5, "bf16"),  # AMX: no measurement needed
        ("avx2 avx512_bf16", 2.1, "bf16"),  # an AMD EPYC's bf16 block: 2.0-2.3x
        ("avx2 avx512_bf16", 0.9, "fp32"),  # a Xeon without AMX, where the whole step ran at 0.65x
        ("avx2", 5.0, "fp32"),  # bf16 emulated: never, whatever a measurement would say
    ],
)
def test_auto_precision_follows_the_flags_and_the_measurement(flags, cpu_flags, measured, precision):
    if torch.cuda.is_available():
        pytest.skip("on a GPU, auto follows the card")
    flags(cpu_flags, measured)
    assert hardware.resolve_precision("auto") == precision
    assert hardware.resolve_precision("fp32") == "fp32"


def test_the_measurement_is_made_once_per_machine_and_a_damaged_figure_is_measured_again(flags, monkeypatch):
    calls = []
    flags("avx2 avx512_bf16")
    monkeypatch.setattr(hardware, "_measure_bf16_block", lambda: calls.append(1) or 1.8)
    assert hardware.bf16_block_speedup() == 1.8
    hardware.bf16_block_speedup.cache_clear()  # a new process reads the file
    assert hardware.bf16_block_speedup() == 1.8 and len(calls) == 1
    (saved,) = (Path(os.environ["TUNESMITH_CACHE"]) / "hardware").glob("bf16-*.json")
    for damaged in ("{not json", json.dumps({"speedup": "fast"}), json.dumps([1.8])):
        saved.write_text(damaged)
        hardware.bf16_block_speedup.cache_clear()
        assert hardware.bf16_block_speedup() == 1.8
    assert len(calls) == 4 and json.loads(saved.read_text())["speedup"] == 1.8


def test_the_measurement_leaves_the_callers_random_draws_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    speedup = hardware._measure_bf16_block(tokens=64, steps=1)
    assert torch.equal(torch.rand(3), expected) and speedup > 0


def test_under_torchrun_other_ranks_take_rank_zeros_figure(flags, monkeypatch):
    """Ranks that measured apart could pick different precisions; the others wait for local rank 0's figure."""
    calls, naps = [], []
    flags("avx2 avx512_bf16")
    monkeypatch.setattr(hardware, "_measure_bf16_block", lambda: calls.append(1) or 2.5)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert hardware.bf16_block_speedup() == 2.5 and len(calls) == 1  # rank 0 measures and writes
    hardware.bf16_block_speedup.cache_clear()
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(hardware.time, "sleep", naps.append)
    assert hardware.bf16_block_speedup() == 2.5 and len(calls) == 1 and naps == []  # read, not measured
    for saved in (Path(os.environ["TUNESMITH_CACHE"]) / "hardware").glob("bf16-*.json"):
        saved.unlink()
    hardware.bf16_block_speedup.cache_clear()
    assert hardware.bf16_block_speedup() == 2.5 and len(naps) == 60 and len(calls) == 2  # rank 0 gone: measure
