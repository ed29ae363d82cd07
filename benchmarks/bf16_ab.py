"""Is bf16 autocast faster than fp32 for training on this CPU? MiniLM classification steps, both ways, in one run.

    python benchmarks/bf16_ab.py [--batch 32] [--tokens 64] [--steps 8] [--repeats 2]

What `train.precision: auto` decides from (engine/hardware.py): on a Xeon with AVX512-BF16 but no AMX
this measured bf16 at 0.65x fp32; AVX2-only CPUs emulate bf16 (~100x slower); AMX CPUs run it faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def steps_per_s(model, opt, batch, labels, bf16: bool, steps: int) -> float:
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if bf16
        else (lambda: torch.autocast("cpu", enabled=False))
    )
    for i in range(steps + 2):  # the first two warm up
        if i == 2:
            start = time.perf_counter()
        with ctx():
            loss = model(input_ids=batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return steps / (time.perf_counter() - start)


def main() -> None:
    from transformers import AutoModelForSequenceClassification

    from tunesmith.models.loading import resolve_weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(resolve_weights("minilm-l6"), num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), 1e-5)
    batch = torch.randint(1000, 20000, (args.batch, args.tokens))
    labels = torch.randint(0, 2, (args.batch,))
    runs = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both
        for name in runs:
            runs[name].append(args.batch * steps_per_s(model, opt, batch, labels, name == "bf16", args.steps))
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    fp32, bf16 = statistics.median(runs["fp32"]), statistics.median(runs["bf16"])
    print(f"{cpu} (amx_bf16: {'amx_bf16' in flags}, avx512_bf16: {'avx512_bf16' in flags})")
    print(f"fp32 {fp32:.1f} samples/s, bf16 autocast {bf16:.1f} samples/s: bf16/fp32 = {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
