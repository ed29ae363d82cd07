"""SmolLM2-135M LoRA SFT on Bitext support answers: tunesmith vs a plain TRL SFTTrainer script.

    python benchmarks/sft_vs_trl.py [--samples 300] [--repeats 1] [--first-seed 42] [--json out.json]

Same model, same seeded rows (prompt -> answer, loss on the answer only in both), same LoRA config
(r 16, alpha 32, dropout 0.05, the registry's target modules), batch 8, 1 epoch, max_length 1024.
TRL keeps its defaults otherwise (lr 2e-5, activation checkpointing, no packing; bf16 on a GPU); on a CPU
it gets bf16 exactly where tunesmith's `precision: auto` picks it (AMX, or AVX512-BF16 measured faster), since
its bf16 default refuses to start on a CPU without being asked and emulated bf16 would be ~100x slower.
Each run is its own process so peak RSS is its own. Validation loss is computed the same way for
both (tunesmith's token-weighted loss on answer tokens of 100 held-out rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bitext_customer_support_sft"
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
BATCH, MAX_LENGTH = 8, 1024
PRECISION_ENV = "SFT_BENCH_PRECISION"  # --precision, handed to the children


def write_rows(tmp: Path, samples: int, seed: int) -> None:
    import pandas as pd

    for name, n, source in (("train", samples, "train"), ("validation", 100, "validation")):
        frame = pd.read_json(DATA / f"{source}.jsonl", lines=True).sample(n=n, random_state=seed)
        frame[["prompt", "response"]].to_json(tmp / f"{name}.jsonl", orient="records", lines=True)


def validation_rows(tmp: Path, tokenizer):
    from tunesmith.data.conversations import read_conversations
    from tunesmith.recipe import DataSection
    from tunesmith.tasks.generation.formatting import encode

    conv = read_conversations(str(tmp / "validation.jsonl"), DataSection(train="x"), "validation")
    return encode(tokenizer, conv.samples, MAX_LENGTH, "responses").rows


def run_tunesmith(tmp: Path, seed: int, packing: bool) -> dict:
    import tunesmith

    recipe = {
        "task": "generation",
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"train": str(tmp / "train.jsonl"), "validation": str(tmp / "validation.jsonl")},
        "method": {"tuning": "lora", "lora": LORA},
        "train": {
            "epochs": 1,
            "batch_size": BATCH,
            "max_length": MAX_LENGTH,
            "seed": seed,
            "packing": packing,
            "precision": os.environ.get(PRECISION_ENV, "auto"),
        },
        "eval": {"max_samples": 1, "max_new_tokens": 1},
    }
    m = tunesmith.run(recipe, output_dir=tmp / f"ts-{packing}", overwrite=True).metrics
    return {
        "tokens_per_s": m["train"]["tokens_per_s"],
        "val_loss": m["train"]["history"][-1]["loss"],
        "train_s": m["train"]["runtime_s"],
    }


def run_trl(tmp: Path, seed: int) -> dict:
    """What a user writes from the TRL docs: prompt/completion data, a LoraConfig, SFTConfig defaults."""
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.models.registry import MODELS
    from tunesmith.tasks.generation.generate import validation_loss

    path = resolve_weights("smollm2-135m-instruct")
    raw = load_dataset("json", data_files=str(tmp / "train.jsonl"), split="train")
    train = raw.map(
        lambda r: {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["response"]}],
        },
        remove_columns=["prompt", "response"],
    )
    peft = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=MODELS["smollm2-135m-instruct"]["lora_targets"],
        task_type="CAUSAL_LM",
    )
    import torch

    from tunesmith.engine.hardware import cpu_has_fast_bf16

    # on a GPU, TRL's own defaults (bf16 where the card has it); on a CPU bf16 where it is fast
    precision = os.environ.get(PRECISION_ENV, "auto")
    bf16 = cpu_has_fast_bf16() if precision == "auto" else precision == "bf16"
    device = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": bf16}
    args = SFTConfig(
        output_dir=str(tmp / "trl"),
        num_train_epochs=1,
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        seed=seed,
        report_to=[],
        save_strategy="no",
        **device,
    )
    trainer = SFTTrainer(
        model=load_causal_lm(path),
        args=args,
        train_dataset=train,
        peft_config=peft,
        processing_class=load_tokenizer(path),
    )
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    result = trainer.train()
    tokenizer = load_tokenizer(path)
    val = validation_loss(trainer.model, validation_rows(tmp, tokenizer), 16, tokenizer.pad_token_id)
    return {
        "tokens_per_s": tokens / result.metrics["train_runtime"],
        "val_loss": val["loss"],
        "train_s": result.metrics["train_runtime"],
    }


def child(which: str, tmp: Path, seed: int) -> None:
    start = time.perf_counter()
    result = run_trl(tmp, seed) if which == "trl" else run_tunesmith(tmp, seed, packing=which == "tunesmith_packing")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch

    if torch.cuda.is_available():  # on a GPU the memory that bounds a run is the card's
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["wall_s"] = time.perf_counter() - start
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=42, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--only", nargs="*", default=["trl", "tunesmith", "tunesmith_packing"])
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help="both sides (default: as auto picks)"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(PRECISION_ENV, args.precision)
    if args.child:
        return child(args.child[0], Path(args.child[1]), int(args.child[2]))
    results = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            seed = args.first_seed + r
            write_rows(Path(tmp), args.samples, seed)
            for name in args.only:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", name, tmp, str(seed)], capture_output=True, text=True
                )
                line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
                results[name].append(json.loads(line[7:]))
                print(name, results[name][-1], file=sys.stderr, flush=True)
    summary = {name: {k: statistics.median(run[k] for run in runs) for k in runs[0]} for name, runs in results.items()}
    if "trl" in summary:
        for name in summary:
            summary[name]["speedup_vs_trl"] = summary[name]["tokens_per_s"] / summary["trl"]["tokens_per_s"]
            summary[name]["val_loss_vs_trl_pct"] = 100 * (summary[name]["val_loss"] / summary["trl"]["val_loss"] - 1)
    summary["samples"], summary["repeats"] = args.samples, args.repeats
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
