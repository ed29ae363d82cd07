"""Experiment tracking: a real MLflow tracking server and TensorBoard event files, read back with their own
readers, hold what the run folder holds."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tunesmith.errors import TunesmithError
from tunesmith.pipeline import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite backend, started for these tests and stopped after."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", "1", "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("mlflow server did not start in 60 s")
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def _tracked(toy_data, **train):
    recipe = toy_data["recipe"]
    return {**recipe, "train": {**recipe["train"], "epochs": 3, "log_every": 2, **train}}


def test_mlflow_server_holds_the_recipe_curves_metrics_and_files(toy_data, tmp_path, mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    recipe = _tracked(toy_data, report_to=["mlflow", "tensorboard"], run_name="toy-a", tags={"team": "legal"})
    result = run(recipe, output_dir=tmp_path / "run")
    client = MlflowClient(mlflow_server)
    (found,) = client.search_runs(
        [client.get_experiment_by_name("tunesmith").experiment_id], "attributes.run_name = 'toy-a'"
    )
    assert found.info.status == "FINISHED" and found.data.tags["team"] == "legal"
    assert float(found.data.params["train.lr"]) == result.metrics["train"]["lr"]
    assert found.data.params["model.name"] == "tiny-bert"
    for key in ("accuracy", "f1_macro"):
        assert found.data.metrics[f"tuned/{key}"] == pytest.approx(result.metrics["tuned"][key])
        assert found.data.metrics[f"base/{key}"] == pytest.approx(result.metrics["base"][key])
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    losses = client.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in losses] == [r["step"] for r in steps]
    assert [m.value for m in losses] == pytest.approx([r["loss"] for r in steps])
    epochs = [r for r in log if "eval" in r]
    val = client.get_metric_history(found.info.run_id, "eval/accuracy")
    assert [m.value for m in val] == pytest.approx([r["eval"]["accuracy"] for r in epochs])
    files = {f.path for f in client.list_artifacts(found.info.run_id)}
    assert {"report.md", "metrics.json"} <= files
    saved = json.loads(Path(client.download_artifacts(found.info.run_id, "metrics.json", str(tmp_path))).read_text())
    assert saved["tuned"] == result.metrics["tuned"]

    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [r["step"] for r in steps]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in steps])
    assert events.Scalars("tuned/accuracy")[-1].value == pytest.approx(result.metrics["tuned"]["accuracy"])


def test_seeds_are_child_runs_of_one_parent(toy_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'local.db'}"  # MLflow's local store, no server: the offline case
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's local store keeps artifacts in ./mlruns
    recipe = _tracked(toy_data, report_to=["mlflow"], seeds=2, experiment="seeds", epochs=1)
    result = run(recipe, output_dir=tmp_path / "seeds")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("seeds").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "seeds")
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == ["seeds/seed-42", "seeds/seed-43"]
    assert parent.data.metrics["tuned/accuracy"] == pytest.approx(result.metrics["tuned"]["accuracy"])
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_tracker_that_is_not_installed_is_named_with_its_install_command(toy_data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TunesmithError, match="pip install wandb"):
        run(_tracked(toy_data, report_to=["wandb"]), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_continual_experiences_are_child_runs_with_their_accuracies(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.test_continual import _recipe, _stream

    uri = f"sqlite:///{tmp_path / 'local.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(_stream(tmp_path), "replay")
    recipe["train"] = {**recipe["train"], "epochs": 2, "report_to": ["mlflow", "tensorboard"], "experiment": "cl"}
    result = run(recipe, output_dir=tmp_path / "cl")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cl").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "cl")
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["cl/1-first", "cl/2-second"]
    matrix = result.metrics["continual"]["matrix"]
    assert children["cl/2-second"].data.metrics["accuracy/first"] == pytest.approx(matrix[1][0])
    assert children["cl/1-first"].data.metrics["accuracy/second"] == pytest.approx(matrix[0][1])
    events = EventAccumulator(str(result.run_dir / "tensorboard" / "2-second"))
    events.Reload()
    assert events.Scalars("loss")  # each experience's curve in its own folder
