"""The dashboard's HTTP side: what it shows equals the run folders, and what it refuses (paths outside the
folder, missing keys, other hosts, writes when read-only, bad recipes)."""

import json
import os
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import two_toy_runs
from tests.hostile import fake_run
from tunesmith.ui import create_ui_app

HOST = {"Host": "127.0.0.1"}


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """Two finished toy runs (first: lr 3e-3, second: lr 1e-3) and a failed one (third), trained once."""
    d = tmp_path_factory.mktemp("ui")
    runs, recipe = two_toy_runs(d)
    fake_run(d / "holder", status="failed", error="ValueError: boom").rename(runs / "third")
    return runs, recipe


@pytest.fixture
def runs_dir(shared_runs, tmp_path):
    """A copy per test: some tests add files or runs."""
    shutil.copytree(shared_runs[0], tmp_path / "runs", symlinks=True)
    return tmp_path / "runs"


def client(root, **options) -> TestClient:
    return TestClient(create_ui_app(root, **options), base_url="http://127.0.0.1")


def test_the_kept_base_probe_scores_what_the_run_reported_for_the_base_model(runs_dir, shared_runs):
    from tunesmith.predict import load_base

    metrics = json.loads((runs_dir / "first" / "metrics.json").read_text())
    scored = load_base(runs_dir / "first").evaluate(shared_runs[1]["data"]["test"])
    assert scored["accuracy"] == pytest.approx(metrics["base"]["accuracy"])
    assert scored["f1_macro"] == pytest.approx(metrics["base"]["f1_macro"])


def test_runs_table_and_run_page_hold_what_the_folders_hold(runs_dir):
    web = client(runs_dir)
    rows = {r["name"]: r for r in web.get("/api/runs").json()["runs"]}
    assert sorted(rows) == ["first", "second", "third"]
    metrics = json.loads((runs_dir / "first" / "metrics.json").read_text())
    assert rows["first"]["status"] == "finished" and rows["third"]["status"] == "failed"
    assert rows["third"]["error"] == "ValueError: boom"
    base, tuned = metrics["base"]["f1_macro"], metrics["tuned"]["f1_macro"]
    assert rows["first"]["headline"] == f"f1_macro {base:.4f} -> {tuned:.4f}"
    page = web.get("/api/run", params={"name": "first"}).json()
    assert page["metrics"]["tuned"] == metrics["tuned"]
    log = [json.loads(line) for line in (runs_dir / "first" / "train_log.jsonl").read_text().splitlines()]
    assert page["curves"]["train"]["loss"] == [r["loss"] for r in log if "loss" in r]
    assert page["curves"]["eval"]["kept"] == [r["best"] for r in log if "eval" in r]
    assert page["plots"] and web.get("/api/plot", params={"name": "first", "file": page["plots"][0]}).status_code == 200
    compared = web.get("/api/compare", params=[("name", "first"), ("name", "second")]).json()
    assert compared["recipe"] == {"train.lr": ["0.003", "0.001"]} and len(compared["curves"]) == 2


@pytest.mark.parametrize(
    "name",
    [
        "../runs/first",
        "..",
        "/etc",
        "first/../../x",
        ".ui",
        "first/model",
        "%2e%2e",
        "first\\..\\..",
        "first/../second",
        "first" * 300,
    ],
)
def test_a_name_outside_the_folder_or_not_a_run_is_refused(runs_dir, name):
    web = client(runs_dir)
    assert web.get("/api/run", params={"name": name}).status_code == 404
    assert web.get("/api/log", params={"name": name}).status_code == 404


def test_plots_are_served_only_from_the_runs_own_plots_folder(runs_dir, shared_runs, tmp_path):
    (tmp_path / "secret.png").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.png", runs_dir / "first" / "plots" / "link.png")
    os.symlink(shared_runs[0].parent, runs_dir / "escape")  # runs outside the folder, through a symlink
    web = client(runs_dir)
    for file in ("../recipe.yaml", "../../secret.png", "/etc/passwd", "x.txt", "loss.png/../../run.json"):
        assert web.get("/api/plot", params={"name": "first", "file": file}).status_code == 404
    assert web.get("/api/plot", params={"name": "first", "file": "link.png"}).status_code == 404
    assert web.get("/api/run", params={"name": "escape/runs/first"}).status_code == 404
    assert web.get("/static/../../recipe.py").status_code == 404


def test_the_api_key_guards_every_route_and_the_sign_in_sets_a_cookie(runs_dir):
    web = client(runs_dir, api_key="s3cret")
    assert web.get("/api/runs").status_code == 401
    assert web.get("/api/run", params={"name": "first"}).status_code == 401
    assert web.get("/api/plot", params={"name": "first", "file": "loss.png"}).status_code == 401
    assert web.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert web.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert web.post("/api/login", json={"key": "nope"}).status_code == 401
    assert web.post("/api/login", json={"key": "s3cret"}).status_code == 200
    assert web.get("/api/runs").status_code == 200  # the cookie
    assert web.get("/").status_code == 200  # the page itself holds no run data


def test_other_hosts_non_json_posts_and_writes_when_read_only_are_refused(runs_dir):
    web = client(runs_dir)
    assert web.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    form = web.post("/api/playground", content=b"name=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    started = web.post("/api/train", json={"name": "new", "recipe": "model: {name: tiny-bert}"})
    assert started.status_code == 400 and "read-only" in started.json()["error"]
    assert not (runs_dir / "new").exists()
    huge = web.post(
        "/api/playground", content=b"{" + b" " * 1_100_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    deep = web.post(
        "/api/playground", content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert deep.status_code == 400 and "not JSON" in deep.json()["error"]  # RecursionError, not a 500
    page = web.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_run_started_here_is_an_ordinary_run_and_stops_as_interrupted(runs_dir, shared_runs, tmp_path):
    import signal

    import yaml

    web = client(runs_dir, allow_train=True, workdir=tmp_path)
    # long enough to be stopped midway on a fast, idle CPU too (tiny-bert trains ~2,000 samples/s)
    train = {"epochs": 2000, "log_every": 1, "early_stopping": {"patience": None}}
    recipe = {**shared_runs[1], "train": {**shared_runs[1]["train"], **train}}
    text = yaml.safe_dump(recipe)
    for bad, says in (
        ({"name": "first", "recipe": text}, "already exists"),
        ({"name": "../x", "recipe": text}, "Name the run"),
        ({"name": "x", "recipe": "model: {name: tiny-bert}\ntrain: {epochz: 1}"}, "epochz"),
        ({"name": "x", "recipe": "[1, 2"}, "not YAML"),
        ({"name": "x", "recipe": "[" * 50_000 + "]" * 50_000}, "nested too deeply"),  # not a 500
    ):
        refused = web.post("/api/train", json=bad)
        assert refused.status_code == 400 and says in refused.json()["error"], refused.json()
    assert not (runs_dir / "x").exists()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `&` in a script: the child inherits it
    try:
        assert web.post("/api/train", json={"name": "live", "recipe": text}).status_code == 200
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline, step = time.time() + 90, 0
    while time.time() < deadline and step < 5:
        time.sleep(0.5)
        if (runs_dir / "live" / "run.json").is_file():
            step = web.get("/api/log", params={"name": "live"}).json()["step"]
    assert step >= 5
    assert web.get("/api/run", params={"name": "live"}).json()["started_here"] is True
    assert web.post("/api/stop", json={"name": "live"}).json()["stopped"] is True
    assert web.get("/api/log", params={"name": "live"}).json()["status"] == "interrupted"
    # written by the run itself on SIGINT, not inferred from a process killed after ignoring it
    assert json.loads((runs_dir / "live" / "run.json").read_text())["status"] == "interrupted"
    assert yaml.safe_load((runs_dir / "live" / "recipe.yaml").read_text())["train"]["epochs"] == 2000


def test_a_log_with_several_trainings_reads_as_one_sequence():
    from tunesmith.ui.folders import curves, joined

    first = [{"step": 10, "loss": 0.6}, {"step": 20, "loss": 0.4}, {"step": 20, "epoch": 1, "eval": {"f1": 0.5}}]
    second = [{"step": 10, "loss": 0.5}, {"step": 15, "epoch": 1, "eval": {"f1": 0.7}, "best": True}]
    shown = curves(joined(first + second))
    assert shown["train"]["step"] == [10, 20, 30]
    assert shown["eval"]["epoch"] == [1, 2] and shown["eval"]["step"] == [20, 35]
    assert shown["eval"]["f1"] == [0.5, 0.7] and shown["eval"]["kept"] == [False, True]


def test_the_monitor_shows_what_a_serve_collect_folder_recorded(runs_dir, tmp_path):
    from tunesmith.runs.collect import Store

    store = Store(tmp_path / "collected")
    ids = store.record(
        "first",
        1,
        "classification",
        [("good", {"label": "positive"}, {"positive": 0.9, "negative": 0.1}), ("bad", {"label": "negative"}, None)],
    )
    store.add_feedback(ids[0], "first", "label", "negative")
    store.close()
    assert client(runs_dir).get("/api/monitor").json() == {"collect": None, "models": []}
    (shown,) = client(runs_dir, collect=tmp_path / "collected").get("/api/monitor").json()["models"]
    assert shown["model"] == "first" and shown["requests"] == 2 and shown["version"] == 1
    assert shown["label_shares"] == {"negative": 0.5, "positive": 0.5} and shown["mean_confidence"] == 0.9
    assert shown["feedback"] == 1 and shown["feedback_agreement"] == 0.0


def test_a_child_another_thread_already_took_off_the_list_is_not_a_failed_page(tmp_path):
    """A Stop (worker thread) removes its child after waiting for it while a page load (event loop) reaps the
    same finished child: the page must not fail on the missing entry."""
    from tunesmith.ui.jobs import Jobs

    jobs = Jobs(tmp_path, tmp_path)

    class Ended:  # a finished child, taken off the list by a Stop just as this reap looks at it
        def poll(self):
            jobs.running.pop("live", None)
            return 130

    jobs.running["live"] = Ended()
    assert jobs.list() == [] and jobs.running == {}
