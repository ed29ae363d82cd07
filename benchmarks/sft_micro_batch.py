"""SFT training speed and peak memory against the micro-batch, at a fixed effective batch: does a bigger
micro-batch pay on this machine, and from how many tokens per micro-batch does it stop paying?

    python benchmarks/sft_micro_batch.py [--micro 1 2 4 8 16] [--steps 6] [--json out.json]

SmolLM2-135M-Instruct LoRA (r 16), effective batch 16 (micro-batch x accumulation), length-grouped batches,
`train.max_steps` optimizer steps, on two shapes of data: short intent prompts answered with a label
(bitext_customer_support_intent, ~40 tokens a row) and support answers (bitext_customer_support_sft, ~200 tokens
a row, up to ~500). The memory fit is told a budget large enough never to split a batch, so the micro-batch is
what the row says. Each run is its own process; tokens/s is metrics.json's training throughput, peak RSS its
memory.peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "intent": {
        "train": "bitext_customer_support_intent/train.csv",
        "prompt_column": "text",
        "response_column": "label",
        "max_length": 128,
    },
    "support_answers": {"train": "bitext_customer_support_sft/train.jsonl", "max_length": 1024},
}
EFFECTIVE = 16


def child(name: str, micro: int, steps: int, out: Path) -> None:
    import tunesmith

    spec = SETS[name]
    data = {k: v for k, v in spec.items() if k not in ("train", "max_length")}
    recipe = {
        "task": "generation",
        "model": "smollm2-135m-instruct",
        "data": {"train": str(SHARED / spec["train"]), "max_train_samples": 2000, "max_eval_samples": 16, **data},
        "method": {"tuning": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.05}},
        "train": {
            "batch_size": micro,
            "grad_accum": EFFECTIVE // micro,
            "max_steps": steps,
            "max_length": spec["max_length"],
            "memory_budget_gb": 100,
            "gradient_checkpointing": False,
            "seed": 42,
        },
        "eval": {"max_samples": 1, "max_new_tokens": 1, "baseline": "none"},
    }
    m = tunesmith.run(recipe, output_dir=out).metrics
    result = {"tokens_per_s": m["train"]["tokens_per_s"], "peak_rss_mb": m["memory"]["peak_rss_mb"]}
    print("RESULT " + json.dumps({**result, "precision": m["train"]["precision"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--micro", nargs="*", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), int(args.child[2]), Path(args.child[3]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for micro in args.micro:
                cmd = [sys.executable, __file__, "--child", name, str(micro), str(args.steps), f"{tmp}/{name}-{micro}"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                results[f"{name}@{micro}"] = json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-1500:]}
                print(name, micro, json.dumps(results[f"{name}@{micro}"])[:300], flush=True)
    print("| data | micro-batch x accumulation | tokens/s | vs micro-batch 1 | peak RSS |\n|---|---|---:|---:|---:|")
    for key, r in results.items():
        name, micro = key.split("@")
        first = results.get(f"{name}@{args.micro[0]}", {}).get("tokens_per_s")
        if "error" in r:
            print(f"| {name} | {micro} | failed | | |")
            continue
        ratio = f"{r['tokens_per_s'] / first:.2f}x" if first else ""
        print(
            f"| {name} | {micro} x {EFFECTIVE // int(micro)} | {r['tokens_per_s']:.0f} | {ratio} "
            f"| {r['peak_rss_mb'] / 1024:.1f} GB |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
