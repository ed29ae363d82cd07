"""Feedback for a chat model: a SmolLM2 support assistant, trained on some request categories, is served with
--collect; clients ask about categories it never saw, and each answer is corrected with the agent's reference
answer; `tunesmith update --from-feedback` trains and gates the next version, and the server swaps it in.

    python benchmarks/closed_loop_chat.py [--requests 150] [--publish]

Data: bitext_customer_support_sft (../shared/data). The run (LoRA, 1 epoch) trains on 400 requests from the
categories in OLD; the traffic is NEW's training requests (each sent once, 4 clients, 16 new tokens per answer).
Reported: answer-token accuracy (teacher-forced, what the gate compares) and ROUGE-L of greedy answers, for the
base model, version 1 and the new version, on NEW's and OLD's test requests; the gate's figures; the time of
each stage; and whether the server answered from the new version after the swap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from closed_loop import _wait, free_port  # noqa: E402

DATA = HERE.parents[0].parent / "shared" / "data" / "bitext_customer_support_sft"
TUNESMITH = [sys.executable, "-m", "tunesmith"]
OLD = {"ACCOUNT", "ORDER", "DELIVERY", "PAYMENT", "CONTACT", "SHIPPING_ADDRESS", "FEEDBACK", "NEWSLETTER"}
NEW = {"REFUND", "INVOICE", "CANCELLATION_FEE"}
SYSTEM = "You are a helpful customer-support agent."


def rows(split: str, categories: set, n: int | None = None, seed: int = 0) -> list[dict]:
    lines = [json.loads(x) for x in (DATA / f"{split}.jsonl").read_text().splitlines()]
    picked = [{"prompt": r["prompt"], "response": r["response"]} for r in lines if r["category"] in categories]
    return random.Random(seed).sample(picked, n) if n and n < len(picked) else picked


def write(path: Path, items: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in items))
    return str(path)


def train(folder: Path) -> Path:
    import yaml

    recipe = {
        "task": "generation",
        "model": {"name": "smollm2-135m-instruct"},
        "data": {
            "train": write(folder / "train.jsonl", rows("train", OLD, 400)),
            "validation": write(folder / "validation.jsonl", rows("validation", OLD, 40)),
            "test": write(folder / "test.jsonl", rows("test", OLD, 100)),
            "system_prompt": SYSTEM,
        },
        "method": {"name": "supervised", "tuning": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.05}},
        "train": {"epochs": 1, "batch_size": 8, "lr": 5e-4, "max_length": 256, "seed": 42},
        "eval": {"max_samples": 20, "max_new_tokens": 64, "batch_size": 16},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run = folder / "run"  # served as model "run"
    subprocess.run([*TUNESMITH, "-q", "train", str(folder / "recipe.yaml"), "-o", str(run)], check=True)
    return run


def traffic(url: str, requests: list[dict], clients: int) -> list[tuple]:
    """Each request asked once, then corrected with its reference answer; returns (seconds, status) per ask."""
    import httpx

    queue, lock, log = list(requests), threading.Lock(), []

    def worker():
        with httpx.Client(base_url=url, timeout=300) as web:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": item["prompt"]}]
                start = time.time()
                reply = web.post("/v1/chat/completions", json={"model": "run", "messages": messages, "max_tokens": 16})
                log.append((time.time() - start, reply.status_code))
                if reply.status_code == 200:
                    web.post("/v1/feedback", json={"id": reply.json()["id"], "answer": item["response"]})

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return log


def scores(recipe: dict, adapter: Path | None, sets: dict) -> dict:
    """Answer-token accuracy and ROUGE-L (greedy, 30 prompts, 96 new tokens) per set, for one version."""
    from peft import PeftModel

    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.tasks.generation.formatting import encode, ensure_chat_template, learnable
    from tunesmith.tasks.generation.generate import answer_token_accuracy, generate
    from tunesmith.tasks.generation.metrics import rouge_l

    base = resolve_weights(recipe["model"]["name"])
    model = load_causal_lm(base)
    tokenizer = load_tokenizer(str(adapter) if adapter else base)
    ensure_chat_template(tokenizer)
    if adapter:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = {}
    for name, items in sets.items():
        convs = [
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ]
            for r in items
        ]
        encoded = learnable(encode(tokenizer, convs, 256, "responses"))
        accuracy = answer_token_accuracy(model, encoded, 16, tokenizer.pad_token_id)
        answers = generate(model, tokenizer, [c[:2] for c in convs[:30]], max_new_tokens=96, batch_size=10)
        score = rouge_l(answers, [r["response"] for r in items[:30]])["rouge_l"]
        out[name] = {"token_accuracy": accuracy, "rouge_l": score}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150, help="new-category requests sent (each corrected)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    parser.add_argument("--publish-json", type=Path, help="publish the figures an earlier run saved with --json")
    args = parser.parse_args()
    if args.publish_json:
        return publish(_floats(json.loads(args.publish_json.read_text())), args)
    times, result = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.time()
        run = train(folder)
        times["train v1"] = time.time() - start
        port, store = free_port(), folder / "store"
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*TUNESMITH, "serve", str(run), "--port", str(port), "--collect", str(store)],
            env={**os.environ, "NO_COLOR": "1"},
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(url)
            start = time.time()
            log = traffic(url, rows("train", NEW, args.requests, seed=1), args.clients)
            times["traffic"] = time.time() - start
            start = time.time()
            update = subprocess.run(
                [*TUNESMITH, "update", str(run), "--from-feedback", str(store), "--min-examples", "20"],
                capture_output=True,
                text=True,
                env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
            )
            times["update (train + gate)"] = time.time() - start
            print(update.stdout[-2000:], update.stderr[-2000:], flush=True)
            import httpx

            httpx.post(url + "/admin/reload", timeout=600)
            messages = [{"role": "user", "content": "I want a refund"}]
            after = httpx.post(
                url + "/v1/chat/completions", json={"model": "run", "messages": messages, "max_tokens": 8}, timeout=300
            ).json()
        finally:
            server.terminate()
            server.wait()
        gate_files = sorted((run / "versions").glob("*/gate.json"))
        gate = json.loads(gate_files[-1].read_text())
        candidate = gate_files[-1].parent
        import yaml

        recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
        sets = {"new categories": rows("test", NEW, 100, seed=2), "original categories": rows("test", OLD, 100, seed=3)}
        start = time.time()
        result = {
            "base model": scores(recipe, None, sets),
            "v1 (served)": scores(recipe, run / "versions" / "v1" / "adapter", sets),
            f"{candidate.name} ({'promoted' if gate['promoted'] else 'rejected'})": scores(
                recipe, candidate / "adapter", sets
            ),
        }
        times["scoring"] = time.time() - start
    summary = {
        "versions": result,
        "gate": gate,
        "requests": len(log),
        "failed": sum(status != 200 for _, status in log),
        "p95_s": sorted(s for s, _ in log)[int(0.95 * (len(log) - 1))] if log else None,
        "served_after_swap": after.get("system_fingerprint"),
        "times_s": times,
    }
    print(json.dumps(summary, indent=1, default=str), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    if args.publish:
        publish(summary, args)


def publish(summary: dict, args) -> None:
    from results import publish as write

    rows_ = []
    for version, sets in summary["versions"].items():
        rows_.append(
            [version]
            + [
                f"{sets[s][k]:.4f}"
                for s in ("new categories", "original categories")
                for k in ("token_accuracy", "rouge_l")
            ]
        )
    gate = summary["gate"]
    write(
        "closed_loop_chat",
        command=f"python benchmarks/closed_loop_chat.py --requests {summary['requests']} --json out.json --publish",
        title="feedback for a chat model: corrected answers on request categories it never saw",
        baseline="the served version (v1) and the untuned base model, on the same test requests; SmolLM2-135M-Instruct "
        f"LoRA run on 400 bitext support requests of {len(OLD)} categories; {summary['requests']} requests from "
        f"{', '.join(sorted(NEW))} sent once each by {args.clients} clients and corrected with the reference answer; "
        "`tunesmith update --from-feedback` with its defaults (holdout 0.2, forgetting budget 0.01).",
        tables=[
            {
                "caption": "answer-token accuracy (teacher-forced, 100 test requests per set) and ROUGE-L (greedy, 30)",
                "columns": ["version", "new: token acc", "new: ROUGE-L", "original: token acc", "original: ROUGE-L"],
                "rows": rows_,
            },
            {
                "caption": "the gate and the run",
                "columns": [
                    "held-out rows",
                    "held-out before -> after",
                    "original before -> after",
                    "promoted",
                ],
                "rows": [
                    [
                        gate["heldout_rows"],
                        f"{gate['new_before']:.4f} -> {gate['new_after']:.4f}",
                        f"{gate['old_before']:.4f} -> {gate['old_after']:.4f}",
                        f"{gate['promoted']} (server after reload: {summary['served_after_swap']})",
                    ]
                ],
            },
        ],
        reading=_reading(summary),
    )


def _floats(summary: dict) -> dict:
    """Results saved before ROUGE-L was stored as a number held it as {"rouge_l": x}."""
    for sets in summary["versions"].values():
        for scores in sets.values():
            if isinstance(scores["rouge_l"], dict):
                scores["rouge_l"] = scores["rouge_l"]["rouge_l"]
    return summary


def _reading(summary: dict) -> str:
    names = list(summary["versions"])
    v1, new = summary["versions"][names[1]], summary["versions"][names[2]]
    gate = summary["gate"]
    return (
        f"On the categories the run never saw, answer-token accuracy went {v1['new categories']['token_accuracy']:.3f} "
        f"-> {new['new categories']['token_accuracy']:.3f} and ROUGE-L {v1['new categories']['rouge_l']:.3f} -> "
        f"{new['new categories']['rouge_l']:.3f} ({names[1]} -> {names[2]}); on the original categories "
        f"{v1['original categories']['token_accuracy']:.3f} -> {new['original categories']['token_accuracy']:.3f} "
        f"(ROUGE-L {v1['original categories']['rouge_l']:.3f} -> {new['original categories']['rouge_l']:.3f}, "
        "30 greedy answers). "
        f"The gate {'promoted' if gate['promoted'] else 'refused'} it"
        + (f" ({'; '.join(gate['reasons'])})" if gate["reasons"] else "")
        + f". {summary['requests']} requests, {summary['failed']} failed; the server answered as "
        f"{summary['served_after_swap']} after the reload. Times are left out: other jobs shared the 2 cores."
    )


if __name__ == "__main__":
    main()
