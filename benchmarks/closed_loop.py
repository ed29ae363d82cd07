"""The closed loop under load: a sentiment model trained on book reviews is served while 16 clients send
kitchen-product reviews; 10% of the requests get feedback with the true label; `tunesmith loop` trains,
gates and promotes new versions, which the server swaps in live.

    python benchmarks/closed_loop.py [--every 60] [--publish]

Data: amazon_reviews_multidomain (../shared/data): continual MiniLM run on the books domain; traffic =
the kitchen domain's training rows (each sent once), after a warm-up of book reviews (the drift baseline).
Two arms, each from a fresh copy of its run: tunesmith's loop (replay + gate) and naive fine-tuning on the
feedback (strategy naive, --no-gate). Reported per arm: each version's accuracy on the kitchen test set (new
domain) and the books test set (forgetting), requests answered and failed over the run and in the 5 s
around each swap with their p95 latency, and the drift signals of the book traffic vs the kitchen traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon_reviews_multidomain"
TUNESMITH = [sys.executable, "-m", "tunesmith"]
OLD, NEW = "books", "kitchen"


def split(name: str, domain: str) -> pd.DataFrame:
    frame = pd.read_csv(DATA / f"{name}.csv")
    return frame[frame.domain == domain][["text", "label"]].reset_index(drop=True)


def train_base(folder: Path, strategy: str) -> Path:
    for name in ("train", "validation", "test"):
        split(name, OLD).to_csv(folder / f"{OLD}_{name}.csv", index=False)
    recipe = {
        "task": "classification",
        "model": {"name": "minilm-l6"},
        "method": {"name": "continual", "strategy": [strategy]},
        "train": {"epochs": 2, "max_length": 128, "seed": 42},
        "experiences": [
            {
                "name": OLD,
                "data": {k: str(folder / f"{OLD}_{k}.csv") for k in ("train", "validation", "test")},
            }
        ],
    }
    import yaml

    path = folder / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = folder / "run"  # served as model "run"
    subprocess.run([*TUNESMITH, "-q", "train", str(path), "-o", str(run)], check=True)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def traffic(url: str, texts: list, clients: int, feedback_share: float, log: list, until=None) -> None:
    """`clients` threads send the texts in order (each once; with `until`, round and round until it is true);
    log gets (start, seconds, status, version, phase)."""
    import httpx

    queue, lock, rng = list(texts), threading.Lock(), random.Random(0)

    def worker():
        with httpx.Client(base_url=url, timeout=120) as web:
            while True:
                with lock:
                    if until is not None and until():
                        return
                    if not queue:
                        if until is None:
                            return
                        queue.extend(texts)
                    text, label, phase = queue.pop(0)
                    give = rng.random() < feedback_share
                start = time.time()
                try:
                    reply = web.post("/v1/classify", json={"model": "run", "input": text})
                    body = reply.json()
                    status, version = reply.status_code, body.get("version")
                except httpx.HTTPError as err:
                    status, version, body = repr(err), None, {}
                log.append((start, time.time() - start, status, version, phase))
                if give and status == 200 and phase == NEW:
                    web.post("/v1/feedback", json={"id": body["data"][0]["id"], "label": label})

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def accuracy(model_dir: Path, frame: pd.DataFrame) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    right = 0
    for start in range(0, len(frame), 64):
        rows = frame.iloc[start : start + 64]
        batch = tokenizer(list(rows.text), truncation=True, max_length=128, padding=True, return_tensors="pt")
        with torch.no_grad():
            ids = model(**batch).logits.argmax(-1).tolist()
        right += sum(model.config.id2label[i] == y for i, y in zip(ids, rows.label))
    return right / len(frame)


def arm(folder: Path, run: Path, gate: bool, every: int, clients: int) -> dict:
    store, port = folder / "store", free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NO_COLOR": "1"}
    server = subprocess.Popen(
        [*TUNESMITH, "serve", str(run), "--port", str(port), "--collect", str(store)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    loop_cmd = [*TUNESMITH, "loop", str(run), "--collect", str(store), "--every", str(every), "--poll", "2"]
    updater = None
    log: list = []
    try:
        _wait(url)
        warm = [(t, y, OLD) for t, y in split("validation", OLD).itertuples(index=False)]
        traffic(url, warm, clients, 0.0, log)  # the domain the model knows: the drift signals' baseline
        switched = time.time()
        updater = subprocess.Popen(
            loop_cmd + ([] if gate else ["--no-gate"]),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        new = [(t, y, NEW) for t, y in split("train", NEW).itertuples(index=False)]
        traffic(url, new, clients, 0.1, log)
        # the load goes on (no more feedback) until the loop has used what it can and the server follows
        after = [(t, y, "after") for t, y in split("validation", NEW).itertuples(index=False)]
        deadline, seen = time.time() + 1200, {"at": 0.0, "done": False}

        def done() -> bool:  # looked up every 2 s, not on each of the clients' requests
            if time.time() - seen["at"] > 2:
                seen.update(at=time.time(), done=caught_up(run, store, every, url) or time.time() > deadline)
            return seen["done"]

        traffic(url, after, clients, 0.0, log, until=done)
    finally:
        if updater:
            updater.terminate()
            decisions = updater.communicate()[0]
        server.terminate()
        server.wait()
    return {"log": log, "switched": switched, "decisions": decisions, "run": run, "store": store}


def caught_up(run: Path, store: Path, every: int, url: str) -> bool:
    """No update running, fewer than `every` feedback rows waiting, and the server on the current version."""
    import httpx

    from tunesmith.methods.continual_feedback import pending
    from tunesmith.runs import rundir

    current = json.loads((run / "continual.json").read_text())["current"]
    if httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["version"] != current:
        return False  # a promoted version is still loading in the server

    if rundir.process_alive(rundir.read_json(run / "run.json").get("updating")):
        return False
    try:
        waiting = len(pending(run, store)[0])
    except Exception:  # noqa: BLE001  (the store is being written: look again)
        return False
    return waiting < every


def _wait(url: str) -> None:
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else float("nan")


def report(result: dict) -> dict:
    log, run = sorted(result["log"]), result["run"]
    state = json.loads((run / "continual.json").read_text())
    tests = {OLD: split("test", OLD), NEW: split("test", NEW)}
    folders = [f"v{v}" for v in state["lineage"]] + [r["candidate"] for r in state.get("rejected", [])]
    versions = [
        {"version": name, **{d: accuracy(run / "versions" / name / "model", f) for d, f in tests.items()}}
        for name in folders
        if (run / "versions" / name / "model").is_dir()
    ]
    swaps = [log[i][0] for i in range(1, len(log)) if log[i][3] != log[i - 1][3] and log[i][3] is not None]
    around = []
    for moment in swaps:
        window = [r for r in log if abs(r[0] - moment) <= 2.5]
        around.append(
            {
                "requests": len(window),
                "errors": sum(r[2] != 200 for r in window),
                "p95_ms": 1000 * p95([r[1] for r in window]),
            }
        )
    from tunesmith.runs.collect import Store

    signals = {}
    for phase, (start, end) in {
        OLD: (0, result["switched"]),
        NEW: (result["switched"], swaps[0] if swaps else 1e12),
    }.items():
        rows = [r for r in Store(result["store"], readonly=True).requests("run", start) if r["time"] < end]
        confidence = [max(r["scores"].values()) for r in rows if isinstance(r["scores"], dict)]
        positive = [r["answer"].get("label") == "positive" for r in rows]
        far = [r["answer"].get("far_from_training") for r in rows if "far_from_training" in r["answer"]]
        signals[phase] = {
            "far_share": statistics.fmean(far) if far else float("nan"),
            "requests": len(rows),
            "mean_confidence": statistics.fmean(confidence),
            "positive_share": statistics.fmean(positive),
        }
    return {
        "versions": versions,
        "rejected": state.get("rejected", []),
        "requests": len(log),
        "errors": sum(r[2] != 200 for r in log),
        "p95_ms": 1000 * p95([r[1] for r in log]),
        "swaps": around,
        "signals": signals,
        "decisions": result["decisions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=60, help="feedback rows per update (loop --every)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, strategy, gate in (
            ("tunesmith loop (replay + gate)", "replay", True),
            ("naive fine-tuning, no gate", "naive", False),
        ):
            folder = tmp / strategy
            folder.mkdir()
            run = train_base(folder, strategy)
            results[name] = report(arm(folder, run, gate, args.every, args.clients))
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "decisions"}, indent=1), flush=True)
            print(results[name]["decisions"], flush=True)
            shutil.rmtree(folder / "store", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.publish:
        publish(results, args)


def publish(results: dict, args) -> None:
    from results import publish as write

    rows, swaps, drift = [], [], []
    for name, r in results.items():
        for v in r["versions"]:
            rows.append([name, v["version"], f"{v[NEW]:.4f}", f"{v[OLD]:.4f}"])
        swaps.append(
            [
                name,
                r["requests"],
                r["errors"],
                f"{r['p95_ms']:.0f}",
                "; ".join(f"{s['requests']} req, {s['errors']} err, p95 {s['p95_ms']:.0f} ms" for s in r["swaps"])
                or "no swap",
            ]
        )
        for phase, s in r["signals"].items():
            drift.append(
                [
                    name,
                    phase,
                    s["requests"],
                    f"{s['mean_confidence']:.3f}",
                    f"{s['positive_share']:.3f}",
                    f"{s['far_share']:.3f}",
                ]
            )
    ours = results["tunesmith loop (replay + gate)"]
    promoted = [v for v in ours["versions"] if v["version"].startswith("v")]
    theirs = results["naive fine-tuning, no gate"]
    naive = [v for v in theirs["versions"] if v["version"].startswith("v")]
    first, last = promoted[0], promoted[-1]
    write(
        "closed_loop",
        title="the closed loop under load: served on books, traffic from kitchen reviews, feedback on 10%",
        baseline="naive fine-tuning on the same feedback (strategy naive, `loop --no-gate`), same traffic; MiniLM "
        f"continual run on amazon_reviews_multidomain books; {args.clients} clients send each kitchen training "
        f"review once; `loop --every {args.every}`; accuracy from each version's saved model on the test splits.",
        tables=[
            {
                "caption": "accuracy of each version (v<n>: promoted; rejected-<n>: kept out by the gate)",
                "columns": ["arm", "version", f"{NEW} test (new)", f"{OLD} test (original)"],
                "rows": rows,
            },
            {
                "caption": "requests",
                "columns": ["arm", "answered", "failed", "p95 ms", "within 2.5 s of each swap"],
                "rows": swaps,
            },
            {
                "caption": "drift signals: book traffic vs kitchen traffic (before the first swap)",
                "columns": [
                    "arm",
                    "traffic",
                    "requests",
                    "mean confidence",
                    "share predicted positive",
                    "share far from training",
                ],
                "rows": drift,
            },
        ],
        reading=f"The books-trained model scores {first[OLD]:.4f} on books and {first[NEW]:.4f} on kitchen reviews "
        f"before any feedback. With the loop, {NEW} accuracy went {first[NEW]:.4f} -> {last[NEW]:.4f} and {OLD} "
        f"(original) {first[OLD]:.4f} -> {last[OLD]:.4f} over {len(promoted) - 1} promoted version(s), "
        f"{len(ours['rejected'])} rejected by the gate; without the gate every version went live: "
        f"{NEW} {naive[0][NEW]:.4f} -> {naive[-1][NEW]:.4f}, {OLD} {naive[0][OLD]:.4f} -> {naive[-1][OLD]:.4f}. "
        f"Failed requests: {ours['errors']} of {ours['requests']} (loop), {theirs['errors']} of "
        f"{theirs['requests']} (naive).",
    )


if __name__ == "__main__":
    main()
