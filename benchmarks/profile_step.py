"""Where a training step's time goes on this CPU: matmuls, attention, casts, the optimizer, other ops, and the
Python and dispatch overhead between them, for the classification step (MiniLM) and the SFT step (SmolLM2 LoRA).

    python benchmarks/profile_step.py [--task classification sft] [--steps 6] [--precision auto|fp32|bf16]
        [--lora-dropout P]

Each step is built as tunesmith trains it on a CPU (`--native-dropout`: with PyTorch's dropout instead of
tunesmith's cheaper mask): the classification model with its embeddings and bottom third frozen and fused
AdamW; SFT with LoRA on the registry's targets, the frozen base in bf16 when the precision is bf16, and the
answer-only loss. The precision is what `train.precision: auto` picks on this CPU unless told. Token ids are
random (the time of a step does not depend on which tokens), at fixed shapes; `--data` adds the share of padding
in length-grouped batches of a real file's rows, the one cost the shapes leave out.

The table's "overhead" is the step's wall time minus the time inside aten operators: Python, the autograd engine's
bookkeeping and dispatch. Whatever is not "matmul" or "attention" is the room a faster step has; on a CPU with AMX
(native bf16 matmul several times fp32's) the matmuls shrink and the rest is what to remove next.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")
ATTENTION = ("aten::_scaled_dot_product", "aten::scaled_dot_product", "aten::_flash_attention", "aten::softmax")
CASTS = ("aten::to", "aten::_to_copy", "aten::copy_", "aten::type_as")


def category(name: str) -> str:
    if name.startswith("Optimizer") or "adam" in name.lower():
        return "optimizer"
    for label, names in (("matmul", MATMUL), ("attention", ATTENTION), ("casts", CASTS)):
        if any(name.startswith(n) for n in names):
            return label
    return "other ops"


def classification_step(batch: int, tokens: int):
    from tunesmith.models.loading import freeze_bottom, load_classifier, resolve_weights

    model = load_classifier(resolve_weights("minilm-l6"), ["neg", "pos"])
    freeze_bottom(model, embeddings=True, n_layers="auto")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 2e-4, fused=True)
    ids = torch.randint(1000, 20000, (batch, tokens))
    labels = torch.randint(0, 2, (batch,))
    return model, opt, lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss


def sft_step(batch: int, tokens: int, bf16: bool, lora_dropout: float | None = None):
    from tunesmith.models.loading import apply_lora, load_causal_lm, resolve_weights
    from tunesmith.models.registry import MODELS
    from tunesmith.recipe import LoraSection
    from tunesmith.tasks.generation.generate import causal_lm_loss

    name = "smollm2-135m-instruct"
    model = apply_lora(
        load_causal_lm(resolve_weights(name), frozen_bf16=bf16),
        LoraSection() if lora_dropout is None else LoraSection(dropout=lora_dropout),
        MODELS[name],
        "CAUSAL_LM",
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3, fused=True)
    ids = torch.randint(1000, 20000, (batch, tokens))
    labels = ids.clone()
    labels[:, : tokens // 2] = -100  # the prompt half carries no loss
    batch_ = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    return model, opt, lambda: causal_lm_loss(model, batch_)


def profile(model, opt, loss_fn, bf16: bool, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    model.train()
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def step():
        with record_function("forward"), amp:
            loss = loss_fn()
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up: allocator, oneDNN primitive caches
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps * 1e3
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e3 / steps for e in events if e.key in ("forward", "backward", "optimizer")}
    by_cat: dict[str, float] = {}
    others: dict[str, float] = {}
    for e in events:
        if e.key.startswith("aten::") or e.key.startswith("Optimizer"):
            cat, ms = category(e.key), e.self_cpu_time_total / 1e3 / steps
            by_cat[cat] = by_cat.get(cat, 0.0) + ms
            if cat == "other ops":
                others[e.key] = ms
    # the optimizer's own record_function covers its ops; count its aten ops there and not twice
    by_cat["optimizer"] = phases.get("optimizer", by_cat.get("optimizer", 0.0))
    inside = sum(by_cat.values())
    by_cat["overhead (Python, autograd, dispatch)"] = max(0.0, wall - inside)
    top = dict(sorted(others.items(), key=lambda kv: -kv[1])[:6])
    return {"wall_ms": wall, "phases_ms": phases, "categories_ms": by_cat, "top_other_ops_ms": top}


def padding_share(path: Path, batch: int) -> float:
    """Pad tokens / all tokens in length-grouped batches of the file's texts, as the loop draws them."""
    import pandas as pd

    from tunesmith.engine.batching import length_grouped_batches
    from tunesmith.models.loading import load_tokenizer, resolve_weights

    texts = pd.read_csv(path)["text"].astype(str).tolist()[:8000]
    lengths = [len(x) for x in load_tokenizer(resolve_weights("minilm-l6"))(texts, truncation=True)["input_ids"]]
    batches = length_grouped_batches(lengths, batch, seed=42)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def main() -> None:
    from tunesmith.engine.dropout import cheap_dropout
    from tunesmith.engine.hardware import resolve_precision

    parser = argparse.ArgumentParser()
    parser.add_argument("--task", nargs="*", default=["classification", "sft"], choices=["classification", "sft"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--data", type=Path, help="a CSV with a text column, for the padding share")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--native-dropout", action="store_true", help="PyTorch's nn.Dropout, as before tunesmith's")
    parser.add_argument("--lora-dropout", type=float, help="the SFT step's method.lora.dropout (default: the recipe's)")
    args = parser.parse_args()
    bf16 = resolve_precision(args.precision) == "bf16"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    marks = [f for f in ("amx_bf16", "avx512_bf16", "avx2") if f in flags]
    print(f"{cpu} ({', '.join(marks)}), {torch.get_num_threads()} threads, {'bf16' if bf16 else 'fp32'}")
    shapes = {"classification": (32, 64), "sft": (4, 256)}
    out = {"cpu": cpu, "flags": marks, "precision": "bf16" if bf16 else "fp32", "tasks": {}}
    for task in args.task:
        batch, tokens = shapes[task]
        if task == "classification":
            built = classification_step(batch, tokens)
        else:
            built = sft_step(batch, tokens, bf16, args.lora_dropout)
        if not args.native_dropout:
            cheap_dropout(built[0])  # as the training loop runs on a CPU
        result = profile(*built, bf16, args.steps)
        out["tasks"][task] = {"batch": batch, "tokens": tokens, **result}
        print(f"\n{task}: batch {batch} x {tokens} tokens, {result['wall_ms']:.0f} ms a step")
        print("  phases: " + ", ".join(f"{k} {v:.0f} ms" for k, v in result["phases_ms"].items()))
        for cat, ms in sorted(result["categories_ms"].items(), key=lambda kv: -kv[1]):
            print(f"  {cat:<40} {ms:8.1f} ms  {ms / result['wall_ms']:6.1%}")
        print("  largest other ops: " + ", ".join(f"{k[6:]} {v:.0f} ms" for k, v in result["top_other_ops_ms"].items()))
    if args.data:
        out["padding_share"] = padding_share(args.data, 32)
        print(f"\npadding: {out['padding_share']:.1%} of the tokens in length-grouped batches of 32 ({args.data.name})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
