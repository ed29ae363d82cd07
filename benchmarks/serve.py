"""Serving and exports, local only: `tunesmith serve` under concurrent clients vs the plain ways of answering the
same requests in one process, and the fidelity/speed of the ONNX and GGUF exports.

    python benchmarks/serve.py [--classifier RUN] [--chat RUN] [--json out.json]

Without --classifier/--chat it first trains the runs it needs (MiniLM on 2,000 sst2 rows, 1 epoch; SmolLM2-135M
LoRA on 200 support answers, 1 epoch). Then:
- classify: 16 concurrent clients x 50 requests (one text each) against /v1/classify; the same 800 texts one by
  one through a transformers `pipeline("text-classification")` in this process. Requests/s, p50/p95 latency.
- classify, int8 (`--quantize int8`, opt-in): the same 800 requests against a second server; and how far its answers
  move: accuracy of both, labels kept and largest probability change on sst2's 872 validation texts.
- chat: 8 concurrent streaming clients, 64 new tokens each (greedy; support answers run longer, so each stream
  writes 64), the same 8 prompts through sequential `model.generate`. Tokens/s, time to first token.
- exports: ONNX max probability difference and onnxruntime vs PyTorch samples/s on 1,000 texts (length-sorted
batches of 64);
  GGUF (f16) max logit difference vs the merged model on 5 prompts.

`--server-cpus 1 --client-cpus 0` pins the server and the pipeline to the same cores (and as many torch threads),
and the load generator to the others, as a load test from another machine would: the 16 clients' HTTP work
is not charged to the server, and the server gets exactly the compute the pipeline gets. Without them all
three share the whole machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def train_runs(tmp: Path, chat: bool = True) -> tuple[Path, Path | None]:
    import tunesmith

    sst2 = pd.read_csv(SHARED / "sst2" / "train.csv").sample(2000, random_state=0)
    sst2.to_csv(tmp / "sst2.csv", index=False)
    tunesmith.run(
        {
            "model": "minilm-l6",
            "data": {"train": str(tmp / "sst2.csv"), "test": str(SHARED / "sst2" / "validation.csv")},
            "train": {"epochs": 1},
            "eval": {"baseline": "none"},
        },
        output_dir=tmp / "classifier",
    )
    if not chat:
        return tmp / "classifier", None
    tunesmith.run(
        {
            "task": "generation",
            "model": "smollm2-135m-instruct",
            "data": {
                "train": str(SHARED / "bitext_customer_support_sft" / "train.jsonl"),
                "max_train_samples": 200,
                "max_eval_samples": 8,
            },
            "train": {"epochs": 1},
            "eval": {"baseline": "none", "max_new_tokens": 16},
        },
        output_dir=tmp / "chat",
    )
    return tmp / "classifier", tmp / "chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpus: set[int] | None) -> dict:
    """Popen arguments that run a child on `cpus` with as many torch threads (nothing when unpinned)."""
    if not cpus:
        return {}
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cpus))}
    return {"env": env, "preexec_fn": lambda: os.sched_setaffinity(0, cpus)}


def start_server(runs: list[Path], extra: list[str] = (), cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "serve", *map(str, runs), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **pinned(cpus),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
    raise SystemExit("server did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_classify(url: str, model: str, texts: list[str], clients: int = 16, per_client: int = 50) -> dict:
    """`clients` concurrent clients (asyncio tasks on one connection pool), each sending its requests one after
    another."""
    import asyncio

    latencies, errors = [], []

    async def client(http, c: int) -> None:
        for i in range(per_client):
            start = time.perf_counter()
            r = await http.post(url + "/v1/classify", json={"model": model, "input": texts[c * per_client + i]})
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200 or "label" not in r.json()["data"][0]:
                errors.append(r.status_code)

    async def run_all() -> float:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
            start = time.perf_counter()
            await asyncio.gather(*(client(http, c) for c in range(clients)))
            return time.perf_counter() - start

    wall = asyncio.run(run_all())
    return {
        "requests": clients * per_client,
        "errors": len(errors),
        "requests_per_s": clients * per_client / wall,
        "p50_ms": 1000 * pct(latencies, 0.5),
        "p95_ms": 1000 * pct(latencies, 0.95),
    }


def bench_pipeline(run: Path, texts: list[str]) -> dict:
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(run / "model"), device="cpu")
    clf(texts[0])  # warm-up
    latencies = []
    start = time.perf_counter()
    for text in texts:
        t = time.perf_counter()
        clf(text)
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {
        "requests": len(texts),
        "requests_per_s": len(texts) / wall,
        "p50_ms": 1000 * pct(latencies, 0.5),
        "p95_ms": 1000 * pct(latencies, 0.95),
    }


def pipeline_in_child(run: Path, texts: list[str], cpus: set[int] | None, tmp: Path) -> dict:
    """bench_pipeline in a child process on the server's cores (this process keeps the clients' cores)."""
    (tmp / "texts.json").write_text(json.dumps(texts))
    out = subprocess.run(
        [sys.executable, __file__, "--pipeline-only", str(run), "--texts", str(tmp / "texts.json")],
        capture_output=True,
        text=True,
        check=True,
        **pinned(cpus),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def int8_agreement(run: Path) -> dict:
    """fp32 vs int8 answers on sst2's validation set: accuracy of each, labels kept, largest probability change."""
    import tunesmith
    from tunesmith.serve.quantize import quantize_predictor

    val = pd.read_csv(SHARED / "sst2" / "validation.csv")
    texts, gold = val["text"].tolist(), val["label"].astype(str).to_numpy()
    exact, quantized = tunesmith.Predictor.load(run), tunesmith.Predictor.load(run)
    quantize_predictor(quantized, "int8")
    p, q = exact.predict_proba(texts), quantized.predict_proba(texts)
    accuracy = lambda probs: float((np.asarray(exact.classes_)[probs.argmax(1)] == gold).mean())  # noqa: E731
    return {
        "texts": len(texts),
        "same_label": int((p.argmax(1) == q.argmax(1)).sum()),
        "max_prob_diff": float(abs(p - q).max()),
        "accuracy_fp32": accuracy(p),
        "accuracy_int8": accuracy(q),
    }


def bench_chat(url: str, model: str, prompts: list[str], max_tokens: int = 64) -> dict:
    ttft, tokens, errors = [], [], []

    def client(prompt: str) -> None:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start, first, count = time.perf_counter(), None, 0
        try:
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        count = chunk["usage"]["completion_tokens"]
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and first is None:
                        first = time.perf_counter() - start
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
            return
        ttft.append(first if first is not None else float("nan"))
        tokens.append(count)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        list(pool.map(client, prompts))
    wall = time.perf_counter() - start
    return {
        "clients": len(prompts),
        "errors": len(errors),
        "tokens": sum(tokens),
        "tokens_per_s": sum(tokens) / wall,
        "ttft_p50_s": pct(ttft, 0.5) if ttft else None,
        "ttft_p95_s": pct(ttft, 0.95) if ttft else None,
    }


def bench_sequential_generate(run: Path, prompts: list[str], max_tokens: int = 64) -> dict:
    import torch

    import tunesmith

    predictor = tunesmith.Predictor.load(run)
    model, tok = predictor.model, predictor.tokenizer
    count = 0
    start = time.perf_counter()
    for prompt in prompts:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        count += out.shape[1] - ids["input_ids"].shape[1]
    wall = time.perf_counter() - start
    return {"prompts": len(prompts), "tokens": count, "tokens_per_s": count / wall}


def bench_onnx(run: Path, texts: list[str], tmp: Path) -> dict:
    import numpy as np
    import onnxruntime as ort

    import tunesmith
    from tunesmith.export import export_run

    record = export_run(run, "onnx", tmp / "onnx")
    predictor = tunesmith.Predictor.load(run, precision="fp32")
    session = ort.InferenceSession(str(tmp / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    tok = predictor.tokenizer

    def ort_probs(batch):
        enc = tok(batch, padding=True, truncation=True, max_length=record["max_length"], return_tensors="np")
        return session.run(None, {k: enc[k].astype(np.int64) for k in record["inputs"]})[0]

    order = sorted(
        range(len(texts)), key=lambda i: len(texts[i])
    )  # similar lengths per batch, as tunesmith's path does
    start = time.perf_counter()
    sorted_probs = np.concatenate([ort_probs([texts[j] for j in order[i : i + 64]]) for i in range(0, len(texts), 64)])
    ort_s = time.perf_counter() - start
    got = np.empty_like(sorted_probs)
    got[np.asarray(order)] = sorted_probs
    start = time.perf_counter()
    want = predictor.predict_proba(texts)  # tunesmith's PyTorch path (length-sorted batches of 64)
    torch_s = time.perf_counter() - start
    return {
        "texts": len(texts),
        "parity_check_max_diff": record["parity"]["max_abs_difference"],
        "max_probability_difference": float(np.abs(got - want).max()),
        "same_label": float((got.argmax(1) == want.argmax(1)).mean()),
        "onnxruntime_samples_per_s": len(texts) / ort_s,
        "pytorch_samples_per_s": len(texts) / torch_s,
        "ratio": torch_s / ort_s,
    }


def bench_gguf(run: Path, tmp: Path) -> dict:
    from tunesmith.export import export_run

    record = export_run(run, "gguf", tmp / "gguf", gguf_type="f16")
    size = (tmp / "gguf" / "model.gguf").stat().st_size
    return {**record["round_trip"], "gguf_type": "f16", "size_mb": size / 2**20, "stop": record["stop"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--chat", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--classify-only", action="store_true", help="the classify rows only (no chat, no exports)")
    parser.add_argument(
        "--server-cpus",
        type=lambda v: {int(c) for c in v.split(",")},
        help="e.g. 1: the server's and the pipeline's cores",
    )
    parser.add_argument(
        "--client-cpus", type=lambda v: {int(c) for c in v.split(",")}, help="e.g. 0: the load generator's cores"
    )
    parser.add_argument("--pipeline-only", type=Path, help=argparse.SUPPRESS)  # the child of pipeline_in_child
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_only:
        print(json.dumps(bench_pipeline(args.pipeline_only, json.loads(args.texts.read_text()))))
        return
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    cpus = args.server_cpus
    results = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "server_cpus": sorted(cpus or []),
        "client_cpus": sorted(args.client_cpus or []),
    }
    texts = pd.read_csv(SHARED / "sst2" / "validation.csv")["text"].tolist()
    texts = (texts * 2)[:1000]
    # support questions whose answers run past 64 tokens: every stream writes its full 64
    prompts = pd.read_json(SHARED / "bitext_customer_support_sft" / "test.jsonl", lines=True)["prompt"].tolist()[:8]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.classifier and (args.chat or args.classify_only):
            classifier, chat = args.classifier, args.chat
        else:
            classifier, chat = train_runs(tmp, chat=not args.classify_only)
        proc, url = start_server([classifier] + ([] if args.classify_only else [chat]), cpus=cpus)
        try:
            bench_classify(url, classifier.name, texts, clients=4, per_client=5)  # warm-up
            results["serve_classify"] = bench_classify(url, classifier.name, texts[:800])
            print("serve classify", json.dumps(results["serve_classify"]), flush=True)
            if not args.classify_only:
                results["serve_chat"] = bench_chat(url, chat.name, prompts)
                print("serve chat", json.dumps(results["serve_chat"]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        proc, url = start_server([classifier], ["--quantize", "int8"], cpus=cpus)
        try:
            bench_classify(url, classifier.name, texts, clients=4, per_client=5)  # warm-up
            results["serve_classify_int8"] = bench_classify(url, classifier.name, texts[:800])
            print("serve classify int8", json.dumps(results["serve_classify_int8"]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        results["int8_agreement"] = int8_agreement(classifier)
        print("int8 agreement", json.dumps(results["int8_agreement"]), flush=True)
        results["pipeline_classify"] = pipeline_in_child(classifier, texts[:800], cpus, tmp)
        results["classify_int8_ratio"] = (
            results["serve_classify_int8"]["requests_per_s"] / results["pipeline_classify"]["requests_per_s"]
        )
        results["classify_ratio"] = (
            results["serve_classify"]["requests_per_s"] / results["pipeline_classify"]["requests_per_s"]
        )
        print(
            "pipeline",
            json.dumps(results["pipeline_classify"]),
            "ratio",
            round(results["classify_ratio"], 2),
            "int8 ratio",
            round(results["classify_int8_ratio"], 2),
            flush=True,
        )
        if args.classify_only:
            print(json.dumps(results, indent=2))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            return
        results["sequential_generate"] = bench_sequential_generate(chat, prompts)
        results["chat_ratio"] = results["serve_chat"]["tokens_per_s"] / results["sequential_generate"]["tokens_per_s"]
        print(
            "sequential generate",
            json.dumps(results["sequential_generate"]),
            "ratio",
            round(results["chat_ratio"], 2),
            flush=True,
        )
        results["onnx"] = bench_onnx(classifier, texts, tmp)
        print("onnx", json.dumps(results["onnx"]), flush=True)
        results["gguf"] = bench_gguf(chat, tmp)
        print("gguf", json.dumps(results["gguf"]), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
