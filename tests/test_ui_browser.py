"""The dashboard in a real headless browser (Debian's chromium driven by Playwright): the page shows what the
run folders hold, compare and the playground work, a live run's step count advances, and nothing on the way
logs a console error."""

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, two_toy_runs

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    if os.environ.get("TUNESMITH_REQUIRE_BROWSER"):  # `make test` sets it: CI must not skip these quietly
        raise RuntimeError("browser tests need Debian's chromium: bash scripts/setup.sh test installs it")
    pytest.skip("chromium is not installed (bash scripts/setup.sh test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two finished toy runs under a folder, the dashboard over it (--allow-train) on 127.0.0.1, and the recipe."""
    from tunesmith.ui import create_ui_app

    d = tmp_path_factory.mktemp("site")
    runs, recipe = two_toy_runs(d)
    with serving(create_ui_app(runs, allow_train=True, workdir=d)) as url:
        yield {"url": url, "runs": runs, "recipe": recipe}


@contextmanager
def serving(app):
    """The app under uvicorn on a free 127.0.0.1 port, in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that records console errors and failed requests; the test fails if any happened."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    page.close()
    assert errors == []


def _metrics(site, name):
    return json.loads((site["runs"] / name / "metrics.json").read_text())


def test_runs_table_and_run_page_show_the_values_of_metrics_json(site, page):
    page.goto(site["url"])
    page.wait_for_selector("#runs tr[data-run='first']")
    m = _metrics(site, "first")
    row = page.locator("#runs tr[data-run='first']")
    expected = f"f1_macro {m['base']['f1_macro']:.4f} -> {m['tuned']['f1_macro']:.4f}"
    assert row.locator("td.headline").inner_text() == expected
    assert "finished" in row.inner_text()
    page.fill("#filter", "second")
    assert page.locator("#runs tr[data-run]").count() == 1
    page.fill("#filter", "")
    page.click("#runs tr[data-run='first'] a")
    page.wait_for_selector("#headline")
    assert (
        page.locator("#headline tr[data-metric='accuracy'] td").nth(2).inner_text() == f"{m['tuned']['accuracy']:.4f}"
    )
    assert page.locator("#headline tr[data-metric='accuracy'] td").nth(1).inner_text() == f"{m['base']['accuracy']:.4f}"
    cells = page.locator("#confusion td").all_inner_texts()
    assert [int(c) for c in cells] == [n for row in m["tuned"]["confusion_matrix"] for n in row]
    assert page.locator("#curves canvas").count() >= 2  # loss and validation curves drawn


def test_compare_shows_both_runs_and_the_recipe_difference(site, page):
    page.goto(site["url"])
    page.wait_for_selector("#runs tr[data-run='second']")
    page.check("#runs tr[data-run='first'] input[type=checkbox]")
    page.check("#runs tr[data-run='second'] input[type=checkbox]")
    page.click("#compare")
    page.wait_for_selector("#recipe-diff")
    diff = page.locator("#recipe-diff").inner_text()
    assert "train.lr" in diff and "0.003" in diff and "0.001" in diff and "train.epochs" not in diff
    tuned = [f"{_metrics(site, n)['tuned']['accuracy']:.4f}" for n in ("first", "second")]
    assert all(t in page.locator("#compare-metrics").inner_text() for t in tuned)


def test_the_playground_answers_with_the_base_and_the_tuned_models_probabilities(site, page):
    from tunesmith import Predictor
    from tunesmith.predict import load_base

    page.goto(site["url"] + "/#/playground/first")
    page.fill("#pg-text", "great wonderful happy")
    page.click("#pg-ask")
    page.wait_for_selector("#pg-out .grid2", timeout=60_000)
    base_shown, tuned_shown = (page.locator("#pg-out .card").nth(i).inner_text() for i in (0, 1))
    tuned = Predictor.load(site["runs"] / "first").predict_proba(["great wonderful happy"])[0]
    base = load_base(site["runs"] / "first").predict_proba(["great wonderful happy"])[0]
    assert all(f"{p:.3f}" in tuned_shown for p in tuned)
    assert all(f"{p:.3f}" in base_shown for p in base)  # the base model with the probe that scored it


def test_a_live_runs_step_count_advances_and_stop_interrupts_it(site, page):
    train = {"epochs": 3000, "log_every": 1, "early_stopping": {"patience": None}}  # still running when stopped
    recipe = {**site["recipe"], "train": {**site["recipe"]["train"], **train}}
    page.goto(site["url"] + "/#/new")
    page.wait_for_selector("#new-recipe")
    page.fill("#new-name", "live")
    page.fill("#new-recipe", yaml.safe_dump(recipe))
    page.click("#new-start")
    first = _until(lambda: _step(page), 90)
    assert _until(lambda: _step(page) > first, 30)  # the page's own polling moved it on
    page.click("#stop")
    page.wait_for_selector("h1 .status.interrupted", timeout=90_000)
    assert json.loads((site["runs"] / "live" / "run.json").read_text())["status"] == "interrupted"


def _step(page) -> int:
    """The step the run page shows (0 before the run's first log line)."""
    text = page.locator("#live").inner_text() if page.locator("#live").count() else ""
    return int(text.split()[1]) if text.startswith("step ") else 0


def _until(check, seconds: float):
    """Poll `check` in Python (the page's CSP forbids the evaluated scripts wait_for_function would send)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not true within {seconds} s")


def test_a_path_outside_the_runs_folder_is_refused_on_the_page(site, page):
    page.goto(site["url"] + "/#/run/..%2F..%2Fetc")
    page.wait_for_selector("text=Not available")
    reply = page.request.get(site["url"] + "/api/run?name=../" + Path(site["runs"]).name + "/first")
    assert reply.status == 404
    page.errors.clear()  # the refused request itself is logged by the browser as a failed load


def test_with_an_api_key_the_page_asks_for_it_before_showing_anything(site, page):
    from tunesmith.ui import create_ui_app

    with serving(create_ui_app(site["runs"], api_key="k3y")) as url:
        page.goto(url)
        page.wait_for_selector("#key")
        assert page.locator("#runs").count() == 0
        page.fill("#key", "wrong")
        page.click("button:has-text('Sign in')")
        page.wait_for_selector("text=wrong key")
        page.fill("#key", "k3y")
        page.click("button:has-text('Sign in')")
        page.wait_for_selector("#runs tr[data-run='first']")
    page.errors[:] = [e for e in page.errors if "401" not in e]  # the refused requests, as the browser logs them


def test_the_playground_shows_a_score_and_a_label_set_beside_the_base_models(tmp_path, page):
    """A regression run's playground shows each model's number; a multi-label run's, the labels each model chose
    (over their thresholds) above every label's probability."""
    from tests.test_multilabel import write_sets as label_sets
    from tests.test_regression import write_sets as score_sets
    from tunesmith import Predictor
    from tunesmith.pipeline import run
    from tunesmith.predict import load_base
    from tunesmith.ui import create_ui_app

    runs, short = tmp_path / "runs", {"epochs": 1, "batch_size": 16}
    (tmp_path / "scores").mkdir(), (tmp_path / "sets").mkdir()
    data = {**score_sets(tmp_path / "scores")}
    run({"task": "regression", "model": "tiny-bert", "data": data, "train": short}, output_dir=runs / "score")
    data = {**label_sets(tmp_path / "sets"), "label_column": "labels", "label_separator": "|"}
    run({"model": "tiny-bert", "data": data, "train": short}, output_dir=runs / "sets")
    text = "good good bad the movie"
    with serving(create_ui_app(runs)) as url:
        for name in ("score", "sets"):
            page.goto("about:blank")  # a whole new load: a hash change alone re-renders the page while we type
            page.goto(f"{url}/#/playground/{name}")
            page.wait_for_selector(f"#pg-run option[value='{name}'][selected]", state="attached")
            page.fill("#pg-text", text)
            page.click("#pg-ask")
            page.wait_for_selector("#pg-out .grid2", timeout=60_000)
            shown = [page.locator("#pg-out .card").nth(i).inner_text() for i in (0, 1)]
            for model, said in zip((load_base(runs / name), Predictor.load(runs / name)), shown):
                if name == "score":
                    assert f"{model.predict([text])[0]:.4f}" in said
                else:
                    assert "labels: " + (", ".join(model.predict([text])[0]) or "none") in said
