"""Peak memory of SmolLM2-135M LoRA SFT with tunesmith's defaults (auto batch, memory fit), per dataset and
max_length, each in its own process: metrics.json's memory.peak_rss_mb beside the pre-training estimate.

    python benchmarks/memory_sft.py [--sets bitext_customer_support_sft instruct_alpaca_libre] [--lengths 512 1024]
        [--epochs 0.05] [--json out.json]

Training is cut to a fraction of an epoch (the peak comes with the first full micro-batches; the batch and
memory settings are the defaults for the full training file), the validation loss is taken on 20 samples and 5
prompts are generated for base and tuned.
The issue's bar: below 6 GB (a plain TRL SFTTrainer at max_length 1,024 peaked at 6.3 GB)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def child(name: str, length: int, epochs: float, out: Path) -> None:
    import tunesmith

    recipe = {
        "task": "generation",
        "model": "smollm2-135m-instruct",
        "data": {
            "train": str(SHARED / name / "train.jsonl"),
            "validation": str(SHARED / name / "validation.jsonl"),
            "max_eval_samples": 20,
        },
        "train": {"max_length": length, "epochs": epochs},
        "eval": {"max_samples": 5, "baseline": "none"},
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    saved = tunesmith.recipe.load_recipe(str(out / "recipe.yaml")).train
    print(
        "RESULT "
        + json.dumps(
            {
                "peak_rss_mb": m["memory"]["peak_rss_mb"],
                "estimate_mb": m["train"].get("memory_estimate_mb"),
                "batch_size": saved.batch_size,
                "grad_accum": saved.grad_accum,
                "checkpointing": saved.gradient_checkpointing,
                "auto": m["train"].get("auto"),
                "tokens_per_s": m["train"]["tokens_per_s"],
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", nargs="*", default=["bitext_customer_support_sft", "instruct_alpaca_libre"])
    parser.add_argument("--lengths", nargs="*", type=int, default=[512, 1024])
    parser.add_argument("--epochs", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), float(args.child[2]), Path(args.child[3]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for length in args.lengths:
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        name,
                        str(length),
                        str(args.epochs),
                        f"{tmp}/{name}-{length}",
                    ],
                    capture_output=True,
                    text=True,
                )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                results[f"{name}@{length}"] = (
                    json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-1500:], "rc": proc.returncode}
                )
                print(name, length, json.dumps(results[f"{name}@{length}"]), flush=True)
    print(
        "| data | max_length | batch x accumulation | checkpointing | estimate | peak RSS "
        "|\n|---|---:|---|---|---:|---:|"
    )
    for key, r in results.items():
        name, length = key.split("@")
        if "error" in r:
            print(f"| {name} | {length} | failed (rc {r['rc']}) | | | |")
            continue
        print(
            f"| {name} | {length} | {r['batch_size']} x {r['grad_accum']} | {r['checkpointing']} | "
            f"{r['estimate_mb'] / 1024:.1f} GB | "
            f"**{r['peak_rss_mb'] / 1024:.1f} GB** |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
