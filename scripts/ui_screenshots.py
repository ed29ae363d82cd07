"""The dashboard screenshots in docs/images/, taken in headless chromium over the runs that
scripts/ui_demo_runs.py trains:

    .venv/bin/python scripts/ui_demo_runs.py /tmp/ui-demo
    .venv/bin/python scripts/ui_screenshots.py /tmp/ui-demo
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from tunesmith.ui import create_ui_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
PAGES = {  # file -> (path, what must be on screen first)
    "ui-runs.png": ("/", "#runs tr[data-run='sentiment-continual']"),
    "ui-run-classification.png": ("/#/run/comment-sentiment", "#confusion"),
    "ui-run-generation.png": ("/#/run/sentiment-answers", "#generations"),
    "ui-run-staged.png": ("/#/run/adapted-sentiment", "#stages"),
    "ui-run-continual.png": ("/#/run/sentiment-continual", "#continual"),
    "ui-compare.png": ("/#/compare/comment-sentiment,comment-sentiment-lr5e-5", "#compare-metrics"),
}


def main(runs: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_ui_app(runs), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, (path, selector) in PAGES.items():
            page.goto(url + path)
            page.wait_for_selector(selector)
            time.sleep(0.3)  # the charts draw on the next frame
            page.screenshot(path=str(OUT / name), full_page=name != "ui-runs.png")
            print("wrote", OUT / name)
        page.goto(url + "/#/playground/sentiment-answers")
        page.fill("#pg-text", "Is this comment positive or negative?\n\nThis is the best thing I've read all week!")
        page.click("#pg-ask")
        page.wait_for_selector("#pg-out .grid2", timeout=300_000)
        page.screenshot(path=str(OUT / "ui-playground.png"))
        print("wrote", OUT / "ui-playground.png")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ui-demo"))
