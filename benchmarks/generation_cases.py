"""The generation cases users bring, base vs tuned, scored the way they judge them; and a plain TRL script beside.

    python benchmarks/generation_cases.py [legal_summaries clinical_notes ...] [--train-samples 300]
        [--prompts 100] [--epochs N] [--trl legal_summaries brand_product_copy] [--then-dpo brand_product_copy]
        [--json out.json] [--publish]

Each case is a shipped recipe run as a user runs it (its data from ../shared/data through the data root), on
`--train-samples` seeded training rows and the first `--prompts` test prompts: ROUGE-L, semantic similarity,
length ratio, faithfulness (summaries) and, for the brand set, the style judge's share (`eval.style_reference:
train`), base and tuned on the same prompts, with training and evaluation wall time.

`--trl NAME ...` also trains those cases with a plain TRL `SFTTrainer` script on the same rows, LoRA and epochs
(TRL's documented LoRA setup: its defaults, lr 2e-4 as TRL's PEFT docs use, prompt/completion data so the loss
is on the answers), then answers the same prompts with the same decoding and answer-length cap and scores them with
the same metrics. `--trl-only` runs the TRL side alone, where tunesmith's rows are already measured.

`--then-dpo NAME ...` also runs those cases as a staged recipe, SFT then DPO (`method: preference`,
`rejected_from: model`: the brand's copy chosen, the SFT model's own answer rejected), on the same rows. Its second
stage's base is the SFT model, so its base vs tuned is SFT alone vs SFT then DPO on the same prompts, the style
judge trained on the brand's copy against the SFT model's answers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "tunesmith" / "recipes"
CASES = ["legal_summaries", "clinical_notes", "news_one_sentence", "brand_product_copy", "ad_scripts"]
SUMMARIES = {"legal_summaries", "clinical_notes", "news_one_sentence"}
BRAND = {"brand_product_copy"}
TRL_LR = 2e-4
UNCUT = 1 << 20  # a max_length no training row reaches
os.environ.setdefault("TUNESMITH_DATA_ROOT", str(ROOT.parent / "shared" / "data"))


def case_recipe(name: str, train_file: Path, args):
    import tunesmith

    overrides = [
        f"data.train={train_file}",
        f"eval.max_samples={args.prompts}",
        *([f"train.epochs={args.epochs}"] if args.epochs is not None else []),
        f"train.seed={args.seed}",
        *args.set,
    ]
    if name in BRAND:
        overrides.append("eval.style_reference=train")
    return tunesmith.load_recipe(RECIPES / f"{name}.yaml", overrides)


def sampled_train(name: str, n: int, tmp: Path, seed: int = 42) -> Path:
    """`n` seeded training rows as their own file, so that tunesmith and TRL train on the very same rows."""
    import tunesmith

    path = Path(tunesmith.load_recipe(RECIPES / f"{name}.yaml").data.train)
    rows = path.read_text(encoding="utf-8").splitlines()
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    out = tmp / f"{name}-train.jsonl"
    out.write_text("\n".join(rows), encoding="utf-8")
    return out


def run_tunesmith(name: str, recipe, tmp: Path) -> dict:
    import tunesmith

    start = time.perf_counter()
    m = tunesmith.run(recipe, output_dir=tmp / f"ts-{name}").metrics
    wall = time.perf_counter() - start
    keep = ("rouge_l", "semantic_similarity", "length_ratio", "faithfulness", "repetition", "style_match")
    return {
        "base": {k: m["base"][k] for k in keep if k in m["base"]},
        "tuned": {k: m["tuned"][k] for k in keep if k in m["tuned"]},
        "train_s": m["train"]["runtime_s"],
        "tokens_per_s": m["train"]["tokens_per_s"],
        "wall_s": wall,
        "generated": m["generated"],
        "style": {k: v for k, v in (m.get("style") or {}).items() if k != "ngrams"},
    }


def _stage_metrics(result, index: int) -> dict:
    return json.loads((result.run_dir / result.metrics["stages"][index]["dir"] / "metrics.json").read_text())


def run_then_dpo(name: str, recipe, tmp: Path) -> dict:
    """The case's recipe as stage 1 (SFT), then DPO against the SFT model's own answers as stage 2."""
    import tunesmith

    raw = recipe.model_dump(mode="json", exclude_unset=True)
    dpo = {"name": "preference", "loss": "dpo", "rejected_from": "model"}
    raw["stages"] = [{"name": "sft", "method": raw.pop("method")}, {"name": "dpo", "method": dpo}]
    start = time.perf_counter()
    result = tunesmith.run(raw, output_dir=tmp / f"dpo-{name}")
    m = result.metrics
    keep = ("rouge_l", "semantic_similarity", "length_ratio", "repetition", "style_match", "preference_accuracy")
    then = m["stages"][1]["own"]
    sft = _stage_metrics(result, 0)  # SFT alone: stage 1
    return {
        "tunesmith": {
            "base": {k: sft["base"][k] for k in keep if k in sft["base"]},
            "tuned": {k: sft["tuned"][k] for k in keep if k in sft["tuned"]},
            "train_s": sft["train"]["runtime_s"],
            "tokens_per_s": sft["train"]["tokens_per_s"],
            "wall_s": None,  # stage 1 of the staged run: its wall time is part of the row below
            "generated": sft["generated"],
            "style": {k: v for k, v in (sft.get("style") or {}).items() if k != "ngrams"},
        },
        "then_dpo": {
            "sft_judged_against_sft": {k: then["base"][k] for k in keep if k in then["base"]},
            "sft_then_dpo": {k: then["tuned"][k] for k in keep if k in then["tuned"]},
            # the stage headline keeps generation figures only: the pair scores are in the stage's own metrics
            "dpo_reward_accuracy": _stage_metrics(result, 1)["tuned"].get("reward_accuracy"),
            "wall_s": time.perf_counter() - start,
        },
    }


def run_trl(name: str, recipe, tmp: Path) -> dict:
    """A plain TRL SFTTrainer on the same rows, then the same prompts answered and scored as tunesmith's are."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunesmith.data.conversations import load_generation
    from tunesmith.engine.hardware import resolve_precision
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, model_spec, resolve_weights
    from tunesmith.recipe import LoraSection
    from tunesmith.tasks.generation.formatting import encode, learnable
    from tunesmith.tasks.generation.generate import generate, split_prompt
    from tunesmith.tasks.generation.metrics import answer_p95, answer_settings, generation_metrics

    data = load_generation(recipe.data, recipe.train.seed)
    train = [split_prompt(s) for s in data.train.samples]
    rows = Dataset.from_list([{"prompt": p, "completion": [{"role": "assistant", "content": r}]} for p, r in train])
    lora = recipe.method.lora or LoraSection()
    weights = resolve_weights(recipe.model.name)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.targets or model_spec(recipe.model.name).get("lora_targets") or "all-linear",
        task_type="CAUSAL_LM",
    )
    bf16 = resolve_precision("auto") == "bf16"
    trainer = SFTTrainer(
        model=load_causal_lm(weights),
        args=SFTConfig(
            output_dir=str(tmp / f"trl-{name}"),
            num_train_epochs=recipe.train.epochs,
            learning_rate=TRL_LR,
            report_to=[],
            save_strategy="no",
            seed=recipe.train.seed,
            **({} if _cuda() else {"use_cpu": True, "bf16": bf16}),
        ),
        train_dataset=rows,
        peft_config=config,
        processing_class=load_tokenizer(weights),
    )
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    start = time.perf_counter()
    result = trainer.train()
    pairs = [split_prompt(s) for s in data.evaluation.samples][: recipe.eval.max_samples]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    model, tokenizer = trainer.model.eval(), load_tokenizer(weights)
    # the same answer-length cap as tunesmith's evaluation: from the training answers' token counts (uncut)
    p95 = answer_p95(learnable(encode(tokenizer, data.train.samples, UNCUT, "responses")))
    kind, max_new = answer_settings(recipe.eval, references, p95)
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and not _cuda()):
        answers = generate(model, tokenizer, prompts, max_new, 16, decoding=recipe.eval.decoding)
    scored = generation_metrics(answers, references, kind, recipe.eval.metrics, prompts=prompts)
    keep = ("rouge_l", "semantic_similarity", "length_ratio", "faithfulness", "repetition")
    return {
        "tuned": {k: scored[k] for k in keep if k in scored},
        "train_s": result.metrics["train_runtime"],
        "tokens_per_s": tokens / result.metrics["train_runtime"],
        "wall_s": time.perf_counter() - start,
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def table(results: dict) -> dict:
    columns = ["case", "model", "ROUGE-L", "semantic sim.", "length ratio", "faithfulness", "style match", "time"]
    rows = []
    for name, r in results.items():
        ts = r.get("tunesmith")  # absent with --trl-only
        sides = (("base", ts["base"], None), ("tuned", ts["tuned"], ts["wall_s"])) if ts else ()
        for label, side, secs in sides:
            rows.append(
                [
                    name if label == "base" else "",
                    f"SmolLM2 {label}",
                    fmt(side.get("rouge_l")),
                    fmt(side.get("semantic_similarity")),
                    fmt(side.get("length_ratio")),
                    fmt(side.get("faithfulness")),
                    fmt(side.get("style_match")),
                    "" if label == "base" else _time(secs, ts["tokens_per_s"]),
                ]
            )
        if "trl" in r:
            t = r["trl"]["tuned"]
            rows.append(
                [
                    "" if ts else name,
                    "TRL SFTTrainer tuned",
                    fmt(t.get("rouge_l")),
                    fmt(t.get("semantic_similarity")),
                    fmt(t.get("length_ratio")),
                    fmt(t.get("faithfulness")),
                    "",
                    f"{r['trl']['wall_s'] / 60:.1f} min ({r['trl']['tokens_per_s']:.0f} train tokens/s)",
                ]
            )
        if "then_dpo" in r:
            d = r["then_dpo"]
            for label, side, secs in (
                ("SFT (style judged against SFT answers)", d["sft_judged_against_sft"], None),
                ("SFT then DPO (same judge)", d["sft_then_dpo"], d["wall_s"]),
            ):
                rows.append(
                    [
                        "",
                        label,
                        *(fmt(side.get(k)) for k in ("rouge_l", "semantic_similarity", "length_ratio", "faithfulness")),
                        fmt(side.get("style_match")),
                        "" if secs is None else f"{secs / 60:.1f} min (both stages)",
                    ]
                )
    return {"columns": columns, "rows": rows}


def _time(secs: float | None, tokens_per_s: float) -> str:
    spent = "in the staged row" if secs is None else f"{secs / 60:.1f} min"
    return f"{spent} ({tokens_per_s:.0f} train tokens/s)"


def save(results: dict, path: Path | None) -> None:
    """After every run: a long benchmark that is stopped still leaves what it measured."""
    if path:
        path.write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=CASES, help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--train-samples", type=int, default=300)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--epochs", type=float, help="passes over the training rows (default: the recipe's own)")
    parser.add_argument(
        "--seed", type=int, default=42, help="draws the training rows and seeds training (another seed: other rows)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override for tunesmith's runs"
    )
    parser.add_argument("--trl", nargs="*", default=[], choices=CASES)
    parser.add_argument("--then-dpo", nargs="*", default=[], choices=CASES)
    parser.add_argument(
        "--trl-only", action="store_true", help="the --trl runs alone, where tunesmith's rows are already measured"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:  # argparse's choices cannot check a positional list that has a default
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.trl_only and not args.trl:
        args.trl = args.cases
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.cases:
            train_file = sampled_train(name, args.train_samples, tmp, args.seed)
            recipe = case_recipe(name, train_file, args)
            if not args.trl_only:
                if name in args.then_dpo:  # its first stage is the SFT run alone: not trained twice
                    results[name] = run_then_dpo(name, recipe, tmp)
                else:
                    results[name] = {"tunesmith": run_tunesmith(name, recipe, tmp)}
                print(name, "tunesmith", json.dumps(results[name]), flush=True)
                save(results, args.json)
            if name in args.trl:
                results.setdefault(name, {})["trl"] = run_trl(name, recipe, tmp)
                print(name, "trl", json.dumps(results[name]["trl"]), flush=True)
                save(results, args.json)

    out = table(results)
    print("\n| " + " | ".join(out["columns"]) + " |")
    for row in out["rows"]:
        print("| " + " | ".join(row) + " |")
    if args.publish:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import publish

        publish(
            "generation_cases",
            title="Summaries and brand copy: base vs tuned on the shipped recipes, and TRL beside",
            baseline=(
                f"the base SmolLM2-135M-Instruct on the same {args.prompts} test prompts; a plain TRL `SFTTrainer` "
                f"(its defaults, lr {TRL_LR:g}, same rows, LoRA and epochs) where a TRL row is shown. "
                f"{args.train_samples} seeded training rows, "
                + ("the recipe's epochs" if args.epochs is None else f"{args.epochs:g} epoch(s)")
                + f", seed {args.seed}"
                + "".join(f", {o}" for o in args.set)
                + ", one run each."
            ),
            tables=[out],
            reading="See the closing figures in docs/generation.md.",
        )


if __name__ == "__main__":
    main()
