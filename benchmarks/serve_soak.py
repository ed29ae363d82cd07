"""A bounded soak of `tunesmith serve` on 127.0.0.1: concurrent clients mixing well-formed and hostile requests.

    python benchmarks/serve_soak.py [--clients 16] [--seconds 60] [--classifier RUN] [--chat RUN] [--json out.json]

Without --classifier/--chat it trains the runs it needs first: MiniLM on the shipped comment-sentiment sample (1 epoch)
and SmolLM2-135M (LoRA, 24 conversations, 1 epoch), or tiny random models with --tiny. The server runs as its own
process (`tunesmith serve`, with an API key); each client loops until the time is up, choosing at random:

- classify (one to four texts) and chat completions (max_tokens 16), answered in full;
- streams read to the end, and streams the client drops after the first chunk (the server must stop generating);
- malformed requests: bad JSON, a lone surrogate, an unknown field, an unknown model, a wrong key, a body over the
  limit, an unknown route. Each must be a 4xx.

Reported: requests by kind and status, 5xx count (must be 0), p50/p95 latency of the well-formed requests, /health
latency while loaded, and the server's resident memory after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

KEY = "soak-key"
SAMPLE = Path(__file__).resolve().parents[1] / "src/tunesmith/samples/comment_sentiment"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(folder: Path, tiny: bool) -> tuple[Path, Path]:
    import pandas as pd

    import tunesmith

    train = pd.read_csv(SAMPLE / "train.csv")
    train.head(240).to_csv(folder / "train.csv", index=False)
    classifier = tunesmith.run(
        {
            "model": "tiny-bert" if tiny else "minilm-l6",
            "data": {"train": str(folder / "train.csv")},
            "train": {"epochs": 1},
            "eval": {"baseline": "none"},
        },
        output_dir=folder / "classifier",
    ).run_dir
    rows = [{"prompt": text, "response": label} for text, label in zip(train["text"][:24], train["label"][:24])]
    (folder / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    chat = tunesmith.run(
        {
            "task": "generation",
            "model": "tiny-llama" if tiny else "smollm2-135m-instruct",
            "data": {"train": str(folder / "chat.jsonl")},
            "train": {"epochs": 1},
            "eval": {"baseline": "none", "max_samples": 2, "max_new_tokens": 4},
        },
        output_dir=folder / "chat",
    ).run_dir
    return classifier, chat


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MESSAGES = [
    [{"role": "user", "content": text}]
    for text in (
        "I want to cancel my order",
        "where is my package",
        "how do I change my shipping address",
        "I need a refund",
    )
]
TEXTS = [
    "my card was charged twice",
    "I cannot log in to my account",
    "please cancel order 1234",
    "where is my refund",
    "change the delivery address",
    "the item arrived broken",
]
HOSTILE = {
    "bad_json": lambda url, model: ("/v1/classify", b'{"model": "x", "input": ', {}),
    "surrogate": lambda url, model: ("/v1/classify", f'{{"model": "{model}", "input": "hi \\ud800"}}'.encode(), {}),
    "unknown_field": lambda url, model: (
        "/v1/chat/completions",
        json.dumps({"model": "chat", "messages": MESSAGES[0], "tools": [{"type": "function"}]}).encode(),
        {},
    ),
    "unknown_model": lambda url, model: ("/v1/classify", json.dumps({"model": "nope", "input": "x"}).encode(), {}),
    "wrong_key": lambda url, model: (
        "/v1/classify",
        json.dumps({"model": model, "input": "x"}).encode(),
        {"Authorization": "Bearer wrong"},
    ),
    "too_big": lambda url, model: ("/v1/classify", json.dumps({"model": model, "input": "x" * 1_200_000}).encode(), {}),
    "unknown_route": lambda url, model: ("/v1/embeddings", b"{}", {}),
}


def _client(url: str, classifier: str, until: float, seed: int) -> list[dict]:
    rng, out = random.Random(seed), []
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        while time.time() < until:
            kind = rng.choices(["classify", "chat", "stream", "stream_dropped", "hostile"], [40, 15, 15, 15, 15])[0]
            start = time.perf_counter()
            if kind == "classify":
                status = client.post(
                    "/v1/classify", json={"model": classifier, "input": rng.sample(TEXTS, rng.randint(1, 4))}
                ).status_code
            elif kind == "chat":
                status = client.post(
                    "/v1/chat/completions", json={"model": "chat", "messages": rng.choice(MESSAGES), "max_tokens": 16}
                ).status_code
            elif kind.startswith("stream"):
                payload = {
                    "model": "chat",
                    "messages": rng.choice(MESSAGES),
                    "max_tokens": 16 if kind == "stream" else 64,
                    "stream": True,
                }
                with client.stream("POST", "/v1/chat/completions", json=payload) as response:
                    status = response.status_code
                    for _ in response.iter_lines() if kind == "stream" else [next(response.iter_lines(), None)]:
                        pass
            else:
                name = rng.choice(sorted(HOSTILE))
                path, body, extra = HOSTILE[name](url, classifier)
                status = client.post(path, content=body, headers=extra).status_code
                kind = f"hostile:{name}"
            out.append({"kind": kind, "status": status, "seconds": time.perf_counter() - start})
    return out


def _health(url: str, until: float, pid: int) -> tuple[list[float], list[float]]:
    """/health latency every half second, and the server's RSS every 10 s (does it level off?)."""
    times, rss, next_rss = [], [], 0.0
    while time.time() < until:
        start = time.perf_counter()
        httpx.get(url + "/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        times.append(time.perf_counter() - start)
        if time.time() >= next_rss:
            rss.append(round(_rss_mb(pid), 1))
            next_rss = time.time() + 10
        time.sleep(0.5)
    return times, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--chat", type=Path)
    parser.add_argument("--tiny", action="store_true", help="tiny random models (a smoke run, not a figure)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunesmith-soak-"))
    classifier, chat = (args.classifier, args.chat) if args.classifier and args.chat else _train(work, args.tiny)
    # the chat run is served as "chat"; the classifier under its folder name
    served = work / "served"
    served.mkdir()
    (served / "chat").symlink_to(Path(chat).resolve())
    port, url = _free_port(), None
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunesmith",
            "serve",
            str(classifier),
            str(served / "chat"),
            "--port",
            str(port),
            "--api-key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        name = Path(classifier).name
        _client(url, name, time.time() + 3, 0)  # warm-up
        rss_start = _rss_mb(server.pid)
        until = time.time() + args.seconds
        with ThreadPoolExecutor(args.clients + 1) as pool:
            health = pool.submit(_health, url, until, server.pid)
            results = [
                r
                for f in [pool.submit(_client, url, name, until, i + 1) for i in range(args.clients)]
                for r in f.result()
            ]
        time.sleep(1)
        rss_end = _rss_mb(server.pid)
        report(results, *health.result(), rss_start, rss_end, args)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(results: list[dict], health: list[float], rss: list[float], rss_start: float, rss_end: float, args) -> None:
    by = Counter((r["kind"], r["status"]) for r in results)
    good = [r["seconds"] for r in results if not r["kind"].startswith("hostile") and r["status"] == 200]
    wrong = [
        r
        for r in results
        if r["status"] >= 500
        or (r["kind"].startswith("hostile") and not 400 <= r["status"] < 500)
        or (not r["kind"].startswith("hostile") and r["status"] != 200)
    ]
    summary = {
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": len(results),
        "by_kind_and_status": {f"{k} {s}": n for (k, s), n in sorted(by.items())},
        "server_errors_5xx": sum(1 for r in results if r["status"] >= 500),
        "unexpected": len(wrong),
        "well_formed_p50_s": round(float(np.percentile(good, 50)), 3) if good else None,
        "well_formed_p95_s": round(float(np.percentile(good, 95)), 3) if good else None,
        "p50_p95_s_by_kind": {
            kind: [round(float(np.percentile(t, q)), 3) for q in (50, 95)]
            for kind in ("classify", "chat", "stream")
            if (t := [r["seconds"] for r in results if r["kind"] == kind and r["status"] == 200])
        },
        "health_max_s": round(max(health), 3) if health else None,
        "server_rss_mb_start": round(rss_start, 1),
        "server_rss_mb_end": round(rss_end, 1),
        "server_rss_mb_every_10s": rss,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
