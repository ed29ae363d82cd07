"""Every headline speed comparison in one run: baseline and tunesmith side by side, ratios, accuracy,
peak memory, and model FLOP utilisation against matmul peaks measured in the same run.

    python benchmarks/speed.py [--short] [--repeats 3] [--only classification sft few_shot inference] [--json out.json]

Each measurement runs in its own child process (so peak RSS is that run's own):
- classification: MiniLM, sst2 (8,000 seeded rows, 1 epoch): HF Trainer with default TrainingArguments,
  the Trainer with bf16 and batch 32 (only where bf16 is fast on the CPU, as `precision: auto` decides;
  elsewhere it is slower or emulated, so batch 32 in fp32 stands in and the table says so), and tunesmith defaults.
- sft: SmolLM2-135M LoRA vs TRL SFTTrainer defaults (benchmarks/sft_vs_trl.py's children).
- few_shot: tunesmith few_shot vs setfit on sst2, K=8 (benchmarks/few_shot.py).
- inference: classification samples/s (tunesmith Predictor vs transformers pipeline) and generation
  tokens/s (tunesmith's batched generate vs a text-generation pipeline called per prompt).
MFU = model FLOPs / peak: 6 x non-embedding parameters x tokens for training, 2x for inference (the
PaLM convention: frozen layers are counted as if trained, so tunesmith's frozen bottom third is not
credited). Peaks: the best of large fp32 and bf16 matmuls timed here, on all threads.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def matmul_peak(dtype_name: str, seconds: float = 2.0) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    n = 1024
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def non_embedding_params(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embed" not in name and "wte" not in name)


# ----------------------------------------------------------------------------- children


def child_classification(name: str, seed: int, samples: int, tmp: Path) -> dict:
    import classification_sst2 as cls
    from transformers import AutoModelForSequenceClassification

    from tunesmith.engine.hardware import cpu_has_fast_bf16
    from tunesmith.models.loading import load_tokenizer, resolve_weights

    rows = cls.sample_rows(samples, seed)
    rows.to_csv(tmp / "train.csv", index=False)
    path = resolve_weights("minilm-l6")
    tokens = sum(len(ids) for ids in load_tokenizer(path)(rows.text.tolist())["input_ids"])
    if name == "tunesmith":
        result = cls.run_tunesmith(tmp / "train.csv", seed, tmp / "ts", [])
    else:
        fast = name == "trainer_bf16_bs32" and cpu_has_fast_bf16()
        result = cls.run_hf_trainer(
            rows,
            seed,
            tmp / "hf",
            # bf16 on a CPU must be asked for with use_cpu, or TrainingArguments refuses to start
            **(
                {"bf16": fast, "use_cpu": fast, "per_device_train_batch_size": 32}
                if name == "trainer_bf16_bs32"
                else {}
            ),
        )
        result["note"] = "" if name != "trainer_bf16_bs32" or fast else "fp32: bf16 is not faster on this CPU"
    params = non_embedding_params(AutoModelForSequenceClassification.from_pretrained(path, num_labels=2))
    result["model_flops_per_s"] = 6 * params * tokens / samples * result["samples_per_s"]
    return result


def child_inference(name: str, n: int) -> dict:
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, pipeline

    from tunesmith.models.loading import load_tokenizer, resolve_weights

    if name.startswith("cls_"):
        path = resolve_weights("minilm-l6")
        texts = pd.read_csv(HERE.parent.parent / "shared/data/sst2/validation.csv").text.tolist()[:n]
        model, tok = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2), load_tokenizer(path)
        tokens = sum(len(ids) for ids in tok(texts)["input_ids"])
        start = time.perf_counter()
        if name == "cls_tunesmith":
            from tunesmith import Predictor

            Predictor(model, tok).predict(texts)
        else:
            pipeline("text-classification", model=model, tokenizer=tok, device="cpu")(texts)
        seconds = time.perf_counter() - start
        return {"samples_per_s": n / seconds, "model_flops_per_s": 2 * non_embedding_params(model) * tokens / seconds}
    path = resolve_weights("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    prompts = [[{"role": "user", "content": f"Write one sentence about the number {i}."}] for i in range(n)]
    start = time.perf_counter()
    if name == "gen_tunesmith":
        from tunesmith.tasks.generation.generate import generate

        answers = generate(model, tok, prompts, max_new_tokens=32)
    else:
        pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
        answers = [pipe(p, max_new_tokens=32, do_sample=False)[0]["generated_text"][-1]["content"] for p in prompts]
    seconds = time.perf_counter() - start
    new_tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {
        "tokens_per_s": new_tokens / seconds,
        "model_flops_per_s": 2 * non_embedding_params(model) * new_tokens / seconds,
    }


def child(args) -> None:
    kind, name, seed, size = args.child
    with tempfile.TemporaryDirectory() as tmp:
        result = (
            child_classification(name, int(seed), int(size), Path(tmp))
            if kind == "classification"
            else child_inference(name, int(size))
        )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def spawn(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


# ----------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="small sizes, one repeat: a quick check, not a figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["classification", "sft", "few_shot", "inference"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    repeats = 1 if args.short else args.repeats
    peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    peak = max(peaks.values())
    print(
        f"matmul peak: fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    rows: list[dict] = []
    if "classification" in args.only:
        samples = 2000 if args.short else 8000
        runs = {n: [] for n in ("trainer_default", "trainer_bf16_bs32", "tunesmith")}
        for r in range(repeats):
            for name in runs:
                runs[name].append(spawn([__file__, "--child", "classification", name, str(42 + r), str(samples)]))
                print("classification", name, runs[name][-1], flush=True)
        rows += table_rows("classification (MiniLM, sst2)", runs, "trainer_default", "samples_per_s", "accuracy", peak)
    if "sft" in args.only:
        size = 100 if args.short else 300
        runs = {n: [] for n in ("trl", "tunesmith")}
        with tempfile.TemporaryDirectory() as tmp:
            import sft_vs_trl

            for r in range(repeats):
                sft_vs_trl.write_rows(Path(tmp), size, 42 + r)
                for name in runs:
                    runs[name].append(spawn([str(HERE / "sft_vs_trl.py"), "--child", name, tmp, str(42 + r)]))
                    print("sft", name, runs[name][-1], flush=True)
        rows += table_rows("SFT (SmolLM2-135M, LoRA)", runs, "trl", "tokens_per_s", "val_loss", peak)
    if "few_shot" in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "fs.json"
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "few_shot.py"),
                    "--sets",
                    "sst2",
                    "--seeds",
                    str(1 if args.short else 5),
                    "--only",
                    "setfit",
                    "few_shot",
                    "--json",
                    str(out),
                ],
                check=True,
            )
            summary = json.loads(out.read_text())["summary"]["sst2"]
        for name in ("setfit", "few_shot"):
            s = summary[name]
            rows.append(
                {
                    "comparison": "few-shot (sst2, K=8)",
                    "system": name,
                    "speed": 1 / s["wall_s_mean"],
                    "unit": "runs/s",
                    "quality": s["accuracy_mean"],
                    "ratio": summary["setfit"]["wall_s_mean"] / s["wall_s_mean"],
                    "peak_rss_mb": None,
                    "mfu": None,
                }
            )
    if "inference" in args.only:
        for kind, names, n, unit in (
            (
                "classification inference",
                ("cls_pipeline", "cls_tunesmith"),
                200 if args.short else 872,
                "samples_per_s",
            ),
            ("generation inference", ("gen_pipeline", "gen_tunesmith"), 4 if args.short else 16, "tokens_per_s"),
        ):
            runs = {
                name: [spawn([__file__, "--child", "inference", name, "0", str(n)]) for _ in range(repeats)]
                for name in names
            }
            rows += table_rows(kind, runs, names[0], unit, None, peak)
    print_table(rows, peaks)
    if args.json:
        args.json.write_text(
            json.dumps({"peaks_flops": peaks, "rows": rows, "repeats": repeats, "short": args.short}, indent=2)
        )


def table_rows(
    title: str, runs: dict, baseline: str, speed_key: str, quality_key: str | None, peak: float
) -> list[dict]:
    med = lambda name, key: (
        statistics.median(r[key] for r in runs[name]) if runs[name] and key in runs[name][0] else None
    )  # noqa: E731
    out = []
    for name in runs:
        flops = med(name, "model_flops_per_s")
        out.append(
            {
                "comparison": title,
                "system": name + (f" ({runs[name][0]['note']})" if runs[name][0].get("note") else ""),
                "speed": med(name, speed_key),
                "unit": speed_key,
                "quality": med(name, quality_key) if quality_key else None,
                "quality_each": [r.get(quality_key) for r in runs[name]] if quality_key else None,
                "ratio": med(name, speed_key) / med(baseline, speed_key),
                "peak_rss_mb": med(name, "peak_rss_mb"),
                "mfu": flops / peak if flops else None,
            }
        )
    return out


def print_table(rows: list[dict], peaks: dict) -> None:
    print(
        f"\n{'comparison':30} {'system':45} {'speed':>10} {'unit':14} {'ratio':>6} {'quality':>8} "
        f"{'peak MB':>8} {'MFU':>6}"
    )
    for r in rows:
        fmt = lambda v, f: format(v, f) if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(
            f"{r['comparison'][:30]:30} {r['system'][:45]:45} {fmt(r['speed'], '10.2f')} {r['unit']:14} "
            f"{fmt(r['ratio'], '6.2f')} {fmt(r['quality'], '8.4f')} {fmt(r['peak_rss_mb'], '8.0f')} "
            f"{fmt(r['mfu'], '6.1%')}"
        )
    print(
        f"MFU against the best measured matmul peak ({max(peaks.values()) / 1e9:.1f} GFLOP/s; "
        f"fp32 {peaks['float32'] / 1e9:.1f}, bf16 {peaks['bfloat16'] / 1e9:.1f}). Quality: accuracy, or "
        f"validation loss for SFT."
    )


if __name__ == "__main__":
    main()
