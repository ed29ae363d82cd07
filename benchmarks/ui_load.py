"""Is the dashboard responsive with many runs? 200 finished run folders, one run training beside them (on the
same cores), `tunesmith ui` in its own process, and a headless chromium loading its pages.

    python benchmarks/ui_load.py [--runs 200] [--loads 30] [--publish]

A page load is timed from navigation to the page's content on screen (the runs table with every row; a run
page's metric table; the compare tables), so it counts the server, the JSON, and the page's own script.
The folders are copies of one real finished MiniLM run (without its model weights, which no page reads). The
bar: p95 page load < 500 ms on 2 cores. There is no baseline tool here: the bar is absolute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path

import yaml

TUNESMITH = [sys.executable, "-m", "tunesmith"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_runs(root: Path, count: int) -> None:
    """One real run, copied `count` times without its weights."""
    sample = Path(str(resources.files("tunesmith") / "samples" / "comment_sentiment"))
    recipe = {
        "model": {"name": "minilm-l6"},
        "data": {"train": str(sample / "train.csv"), "test": str(sample / "test.csv")},
        "train": {"epochs": 1},
    }
    source = root.parent / "source"
    (root.parent / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    subprocess.run([*TUNESMITH, "train", str(root.parent / "recipe.yaml"), "-o", str(source)], check=True)
    for i in range(count):
        shutil.copytree(source, root / f"run-{i:03d}", ignore=shutil.ignore_patterns("model", "checkpoint.pt"))


def timed_loads(url: str, loads: int, live: str) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    times: dict[str, list[float]] = {"runs table": [], "run page": [], "live run page": [], "compare": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        targets = {
            "runs table": ("/", "#runs tr[data-run='run-199']"),
            "run page": ("/#/run/run-007", "#headline"),
            "live run page": (f"/#/run/{live}", "#curves"),
            "compare": ("/#/compare/run-001,run-002", "#compare-metrics"),
        }
        for i in range(loads + 2):
            for name, (path, selector) in targets.items():
                page.goto("about:blank")
                start = time.perf_counter()
                page.goto(url + path)
                page.wait_for_selector(selector, timeout=30_000)
                if i >= 2:  # the first two loads warm the browser's cache and the server's index
                    times[name].append(1000 * (time.perf_counter() - start))
        browser.close()
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--loads", type=int, default=30)
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        make_runs(root, args.runs)
        live_recipe = yaml.safe_load((root.parent / "recipe.yaml").read_text())
        live_recipe["train"]["epochs"] = 50  # outlasts the measurement
        (root.parent / "live.yaml").write_text(yaml.safe_dump(live_recipe))
        env = {**os.environ, "NO_COLOR": "1"}
        trainer = subprocess.Popen(
            [*TUNESMITH, "train", str(root.parent / "live.yaml"), "-o", str(root / "live")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        port = free_port()
        server = subprocess.Popen(
            [*TUNESMITH, "ui", str(root), "--port", str(port)], stderr=subprocess.DEVNULL, env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(url + "/api/runs", timeout=2)
                    if (root / "live" / "train_log.jsonl").is_file():
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            times = timed_loads(url, args.loads, "live")
            still_training = trainer.poll() is None
        finally:
            server.terminate()
            trainer.terminate()
            server.wait()
            trainer.wait()
    rows = [
        [name, len(v), f"{statistics.median(v):.0f}", f"{p95(v):.0f}", f"{max(v):.0f}"] for name, v in times.items()
    ]
    for row in rows:
        print(*row, sep="\t")
    worst = max(p95(v) for v in times.values())
    print(f"worst p95 {worst:.0f} ms; a run was training throughout: {still_training}")
    if args.publish:
        from results import publish

        publish(
            "ui_load",
            title=f"dashboard page loads, {args.runs} run folders, one run training beside it",
            baseline="none (an absolute bar: p95 page load < 500 ms on 2 cores); headless chromium, timed from "
            "navigation to the page's content on screen; `tunesmith ui` in its own process.",
            tables=[{"columns": ["page", "loads", "median ms", "p95 ms", "max ms"], "rows": rows}],
            reading=f"Worst p95 {worst:.0f} ms against the 500 ms bar"
            f"{'' if still_training else ' (the training run had ended before the last load)'}.",
        )


if __name__ == "__main__":
    main()
