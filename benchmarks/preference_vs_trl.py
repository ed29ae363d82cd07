"""Brand-voice DPO with SmolLM2-135M LoRA: tunesmith's `method: preference` vs a plain TRL DPOTrainer script.

    python benchmarks/preference_vs_trl.py [--pairs 200] [--heldout 100] [--repeats 1] [--only trl tunesmith]
        [--pairs-dir DIR] [--side-by-side] [--json out.json] [--publish]

The pairs are the ones a brand team has: chosen = the brand's own copy (the adidas product descriptions in
../shared/data), rejected = the base model's answer to the same product prompt (generated once, greedy, with the
brand recipe's decoding, and cached in --pairs-dir). Both sides train on the same pairs, in one epoch, with the same
LoRA (r 8, alpha 16, dropout 0.05 on the registry's target modules), lr 5e-5 (tunesmith's LoRA default for
preference; TRL's own 1e-6 is for full fine-tuning), beta 0.1, batch 8, max_length 512, sigmoid (DPO) loss.
TRL keeps its other defaults (activation checkpointing on, dropout off, reference = the adapter disabled);
`trl_no_checkpointing` is the same script with activation checkpointing off, its fastest setting on a CPU.
On a CPU, bf16 where tunesmith's `precision: auto` picks it, for both.

`--side-by-side` runs tunesmith and each TRL side at the same time, each pinned to a core of its own with one
thread (a 2-core machine measures both under the same load; with two TRL sides tunesmith runs twice).

Held-out reward accuracy (the share of held-out pairs whose chosen answer gets the higher DPO reward) is scored
for every side by the same code (tunesmith's pair_metrics, reference = the base model); TRL's own evaluate()
figure is kept beside it. Pairs/s is training pairs over training time (tunesmith's includes scoring the training
pairs with the reference once, which TRL does inside its steps; neither includes evaluation). Each side runs in
its own process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TUNESMITH_DATA_ROOT", str(ROOT.parent / "shared" / "data"))
MODEL = "smollm2-135m-instruct"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}
LR, BETA, BATCH, MAX_LENGTH = 5e-5, 0.1, 8, 512
SIDES = ["trl", "trl_no_checkpointing", "tunesmith"]


def build_pairs(folder: Path, n_train: int, n_heldout: int) -> None:
    """train.jsonl / test.jsonl of prompt, chosen (the brand's copy), rejected (the base model's answer)."""
    if (folder / "train.jsonl").exists() and (folder / "test.jsonl").exists():
        return
    import tunesmith
    from tunesmith.data.conversations import load_generation
    from tunesmith.engine.hardware import resolve_precision
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.tasks.generation.formatting import ensure_chat_template
    from tunesmith.tasks.generation.generate import generate, split_prompt
    from tunesmith.tasks.generation.metrics import answer_settings

    recipe = tunesmith.load_recipe(ROOT / "src" / "tunesmith" / "recipes" / "brand_product_copy.yaml")
    data = load_generation(recipe.data, 42)
    rng = random.Random(42)
    train = rng.sample([split_prompt(s) for s in data.train.samples], n_train)
    heldout = [split_prompt(s) for s in data.evaluation.samples][:n_heldout]
    weights = resolve_weights(MODEL)
    model, tokenizer = load_causal_lm(weights).eval(), load_tokenizer(weights)
    ensure_chat_template(tokenizer)
    _, max_new = answer_settings(recipe.eval, [r for _, r in train])
    import torch

    bf16 = resolve_precision("auto") == "bf16" and not torch.cuda.is_available()
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", heldout)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            answers = generate(model, tokenizer, [p for p, _ in rows], max_new, 16, decoding=recipe.eval.decoding)
        pairs = [
            {"prompt": p[-1]["content"], "chosen": c, "rejected": a}
            for (p, c), a in zip(rows, answers)
            if a.strip() and a.strip() != c.strip()
        ]
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(x) for x in pairs), encoding="utf-8")
        print(f"{name}: {len(pairs)} pairs", file=sys.stderr, flush=True)


def run_tunesmith(folder: Path, seed: int) -> dict:
    import tunesmith

    recipe = {
        "task": "generation",
        "model": {"name": MODEL},
        "data": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")},
        "method": {"name": "preference", "loss": "dpo", "beta": BETA, "tuning": "lora", "lora": LORA},
        "train": {"epochs": 1, "batch_size": BATCH, "lr": LR, "max_length": MAX_LENGTH, "seed": seed},
        "eval": {"max_samples": 1, "max_new_tokens": 1},  # the pair metrics are the figure here, not generation
    }
    m = tunesmith.run(recipe, output_dir=folder / f"ts-{seed}", overwrite=True).metrics
    # the loop's training time (its per-epoch validation left out, as TRL's train_runtime has none), plus scoring
    # the training pairs with the reference once (TRL does that inside its steps)
    pairs = m["data"]["train_samples"]
    train_s = pairs / m["train"]["samples_per_s"] + m["train"]["reference_s"]
    return {
        "pairs_per_s": pairs / train_s,
        "train_s": train_s,
        "reference_s": m["train"]["reference_s"],
        "reward_accuracy": m["tuned"]["reward_accuracy"],
        "reward_margin": m["tuned"]["reward_margin"],
    }


def run_trl(folder: Path, seed: int, checkpointing: bool) -> dict:
    """What a user writes from TRL's DPO docs: conversational prompt/chosen/rejected data, a LoraConfig, DPOConfig."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from tunesmith.engine.hardware import cpu_has_fast_bf16
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.models.registry import MODELS

    def conversational(row):
        return {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }

    train = load_dataset("json", data_files=str(folder / "train.jsonl"), split="train").map(conversational)
    test = load_dataset("json", data_files=str(folder / "test.jsonl"), split="train").map(conversational)
    weights = resolve_weights(MODEL)
    device = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": cpu_has_fast_bf16()}
    args = DPOConfig(
        output_dir=str(folder / "trl"),
        num_train_epochs=1,
        learning_rate=LR,
        beta=BETA,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        max_length=MAX_LENGTH,
        seed=seed,
        report_to=[],
        save_strategy="no",
        **({} if checkpointing else {"gradient_checkpointing": False}),
        **device,
    )
    peft = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=MODELS[MODEL]["lora_targets"],
        task_type="CAUSAL_LM",
    )
    trainer = DPOTrainer(
        model=load_causal_lm(weights),
        args=args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=load_tokenizer(weights),
        peft_config=peft,
    )
    result = trainer.train()
    own = trainer.evaluate()
    scored = score_like_tunesmith(trainer.model, folder, device.get("bf16", False))
    return {
        "pairs_per_s": len(train) / result.metrics["train_runtime"],
        "train_s": result.metrics["train_runtime"],
        **scored,
        "trl_eval_reward_accuracy": own.get("eval_rewards/accuracies"),
        "trl_eval_reward_margin": own.get("eval_rewards/margins"),
    }


def score_like_tunesmith(model, folder: Path, bf16: bool) -> dict:
    """Held-out reward accuracy and margin by tunesmith's code: reference = the base (the adapter disabled)."""
    import torch

    from tunesmith.data.preference import read_pairs
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.recipe import DataSection
    from tunesmith.tasks.generation.formatting import ensure_chat_template
    from tunesmith.tasks.generation.preference import PairRows, encode_pair, pair_metrics, reference_logps

    tokenizer = load_tokenizer(resolve_weights(MODEL))
    ensure_chat_template(tokenizer)
    pairs = read_pairs(str(folder / "test.jsonl"), DataSection(train="x"), "test").pairs
    rows = PairRows(
        r for r, _, ok in (encode_pair(tokenizer, p.prompt, p.chosen, p.rejected, MAX_LENGTH) for p in pairs) if ok
    )
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with model.disable_adapter():
            reference_logps(model, rows, BATCH, tokenizer.pad_token_id)
        scored = pair_metrics(model, rows, BATCH, tokenizer.pad_token_id, "dpo", BETA)
    return {"reward_accuracy": scored["reward_accuracy"], "reward_margin": scored["reward_margin"]}


def child(which: str, folder: Path, seed: int) -> None:
    start = time.perf_counter()
    if which == "tunesmith":
        result = run_tunesmith(folder, seed)
    else:
        result = run_trl(folder, seed, checkpointing=which == "trl")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["wall_s"] = time.perf_counter() - start
    print("RESULT " + json.dumps(result), flush=True)


def rounds(args) -> list[list[str]]:
    """Sequential: each side alone. Side by side: tunesmith beside each TRL side in turn (so with two TRL sides
    tunesmith runs twice, a repeat of its own)."""
    if not args.side_by_side:
        return [[name] for name in args.only]
    return [["tunesmith", other] for other in args.only if other != "tunesmith"]


def run_round(names: list[str], folder: Path, seed: int, pinned: bool) -> dict:
    """Each side in its own process (its output in a log file beside the pairs); pinned: all at once, process i
    on core i with one thread."""
    cores = sorted(os.sched_getaffinity(0))
    procs = {}
    for i, name in enumerate(names):
        command = [sys.executable, __file__, "--child", name, str(folder), str(seed)]
        env = dict(os.environ)
        if pinned:
            command = ["taskset", "-c", str(cores[i % len(cores)]), *command]
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        log = (folder / f"{name}-{seed}.log").open("w")
        procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        if not pinned:
            procs[name][0].wait()
    out = {}
    for name, (proc, log) in procs.items():
        proc.wait()
        log.close()
        text = (folder / f"{name}-{seed}.log").read_text(errors="replace")
        line = next((x for x in text.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{name} failed:\n{text[-3000:]}")
        out[name] = json.loads(line[7:])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200, help="training prompts (pairs where the base answer differs)")
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="seeds 42, 43, ...")
    parser.add_argument("--only", nargs="*", default=SIDES, choices=SIDES)
    parser.add_argument("--pairs-dir", type=Path, help="keep the generated pairs here (reused when present)")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run tunesmith and each TRL side at the same time, each on a core of its own with one thread",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), int(args.child[2]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.pairs_dir or Path(tmp)
        build_pairs(folder, args.pairs, args.heldout)
        results = {name: [] for name in args.only}
        for r in range(args.repeats):
            for names in rounds(args):
                for name, result in run_round(names, folder, 42 + r, args.side_by_side).items():
                    results[name].append(result)
                    print(name, result, file=sys.stderr, flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"runs": results}, indent=2))
        pairs = sum(1 for _ in (folder / "train.jsonl").open())
        heldout = sum(1 for _ in (folder / "test.jsonl").open())
    summary = {name: {k: statistics.median(x[k] for x in runs) for k in runs[0] if runs[0][k] is not None}
               for name, runs in results.items()}  # fmt: skip
    for name in summary:
        if "trl" in summary:
            summary[name]["speed_vs_trl"] = summary[name]["pairs_per_s"] / summary["trl"]["pairs_per_s"]
    summary.update(pairs=pairs, heldout=heldout, repeats=args.repeats, side_by_side=args.side_by_side)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    if args.publish:
        publish(summary, results)


def publish(summary: dict, results: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results import publish as put

    names = {
        "trl": "TRL DPOTrainer (its defaults)",
        "trl_no_checkpointing": "TRL, checkpointing off",
        "tunesmith": "tunesmith",
    }
    rows = []
    for name, runs in results.items():
        s = summary[name]
        rows.append(
            [
                names[name],
                " / ".join(f"{x['pairs_per_s']:.2f}" for x in runs),
                f"{s.get('speed_vs_trl', 1):.2f}x",
                " / ".join(f"{x['reward_accuracy']:.3f}" for x in runs),
                " / ".join(f"{x['reward_margin']:.3f}" for x in runs),
                " / ".join(f"{x['peak_rss_mb'] / 1024:.1f} GB" for x in runs),
            ]
        )
    put(
        "preference_vs_trl",
        title="Brand-voice DPO (SmolLM2-135M, LoRA): tunesmith vs TRL's DPOTrainer",
        baseline=(
            f"TRL DPOTrainer on the same {summary['pairs']} pairs (chosen = the brand's copy, rejected = the base "
            f"model's answer), same LoRA, lr {LR:g}, beta {BETA}, batch {BATCH}, 1 epoch, max_length {MAX_LENGTH}; "
            f"held-out reward accuracy on {summary['heldout']} pairs, scored by the same code for every side"
        ),
        tables=[
            {
                "columns": [
                    "run",
                    "pairs/s per seed",
                    "vs TRL",
                    "held-out reward accuracy",
                    "reward margin",
                    "peak RSS",
                ],
                "rows": rows,
            }
        ],
        reading="Seeds 42 onward; the median decides `vs TRL`.",
    )


if __name__ == "__main__":
    main()
