"""Interrupted runs resume as the docs promise: a real training process is killed (SIGKILL) after its first
checkpoint, for every task kind, a staged run and a continual run, then `train --resume` finishes it. A killed
`tunesmith update` leaves the run usable, and a full disk while saving leaves no half-written version."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

import tunesmith
from tests import test_continual, test_multilabel, test_regression, test_token_classification
from tests.conftest import sentiment_rows
from tunesmith.cli import app
from tunesmith.runs.rundir import read_status

runner = CliRunner()
LONG = {"epochs": 4, "batch_size": 4, "save_steps": 6, "early_stopping": {"patience": None}}


def _classification(d):
    for name, n, seed in (("train", 120, 0), ("validation", 30, 1)):
        sentiment_rows(n, seed).to_csv(d / f"{name}.csv", index=False)
    return {"model": "tiny-bert", "data": {"train": str(d / "train.csv"), "validation": str(d / "validation.csv")}}


def _chat(d):
    (d / "chat.jsonl").write_text(
        "\n".join(json.dumps({"prompt": f"where is my order {i}", "response": "track_order"}) for i in range(60))
    )
    return {
        "task": "generation",
        "model": "tiny-llama",
        "data": {"train": str(d / "chat.jsonl")},
        "eval": {"max_samples": 2, "max_new_tokens": 4},
    }


RECIPES = {
    "multi_label": lambda d: test_multilabel.recipe(test_multilabel.write_sets(d), label_separator="|"),
    "regression": lambda d: test_regression.recipe(test_regression.write_sets(d)),
    # the method's own defaults (nothing frozen for tags) must survive the saved recipe's round trip
    "token_classification": lambda d: {
        **test_token_classification.recipe(test_token_classification.write_sets(d)),
        "method": {},
    },
    "generation": lambda d: _chat(d),
    # auto-chosen settings (lr, gradient checkpointing) are saved resolved in each stage's folder
    "staged": lambda d: {
        **_classification(d),
        "stages": [{"name": "first", "train": {"epochs": 2}}, {"name": "second"}],
    },
}


def _kill_when(proc, ready, timeout=180):
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _start(args):
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_a_run_killed_after_a_checkpoint_resumes_to_the_end(kind, tmp_path):
    recipe = RECIPES[kind](tmp_path)
    recipe["train"] = {**recipe.get("train", {}), **LONG}
    recipe["eval"] = {**recipe.get("eval", {}), "baseline": "none"}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    _kill_when(
        _start(["train", str(tmp_path / "recipe.yaml"), "-o", str(run_dir)]),
        lambda: any(run_dir.rglob("checkpoint.pt")),
    )
    assert read_status(run_dir) == "interrupted"
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert read_status(run_dir) == "finished" and json.loads((run_dir / "metrics.json").read_text())["tuned"]
    if kind == "staged":
        assert "finished earlier" not in resumed.output  # stage 1 was the one killed: it continued from its checkpoint
        assert read_status(run_dir / "stages/2-second") == "finished"


def _continual(tmp_path, **train):
    files = test_continual._stream(tmp_path)
    recipe = test_continual._recipe(files, "replay", replay_ratio=1.0)
    recipe["train"] = {**recipe["train"], **train}
    return recipe, files


def test_a_continual_run_killed_after_its_first_version_resumes_from_it(tmp_path):
    recipe, _ = _continual(tmp_path, epochs=8, batch_size=4)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    _kill_when(
        _start(["train", str(tmp_path / "recipe.yaml"), "-o", str(run_dir)]),
        lambda: (run_dir / "versions/v1/version.json").is_file(),
    )
    v1 = (run_dir / "versions/v1/model/model.safetensors").read_bytes()
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert "1 of 2 experiences finished earlier" in resumed.output
    assert (run_dir / "versions/v1/model/model.safetensors").read_bytes() == v1  # kept, not retrained
    state = json.loads((run_dir / "continual.json").read_text())
    assert state["current"] == 2 and len(state["matrix"]) == 2


def test_a_killed_update_leaves_the_run_usable_and_the_next_update_works(tmp_path):
    recipe, files = _continual(tmp_path, epochs=2)
    recipe["experiences"] = recipe["experiences"][:1]
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    new = str(files[("second", "train")])
    proc = _start(["update", str(run_dir), "--data", new, "--validation", str(files[("second", "validation")])])
    _kill_when(proc, lambda: "updating" in (run_dir / "run.json").read_text())
    time.sleep(0)
    assert read_status(run_dir) == "finished"
    versions = runner.invoke(app, ["runs", "versions", str(run_dir)])
    assert versions.exit_code == 0 and "None" not in versions.output, versions.output
    predicted = runner.invoke(app, ["predict", str(run_dir), new, "-o", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    done = runner.invoke(
        app, ["update", str(run_dir), "--data", new, "--validation", str(files[("second", "validation")])]
    )
    assert done.exit_code == 0, done.output
    assert json.loads((run_dir / "continual.json").read_text())["current"] == 2


def test_a_full_disk_while_saving_a_version_leaves_no_partial_version(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    recipe, files = _continual(tmp_path, epochs=1)
    recipe["experiences"] = recipe["experiences"][:1]
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir

    def full(self, folder, *args, **kwargs):
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, "model.safetensors"), "wb").write(b"\0" * 100)
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    done = runner.invoke(app, ["update", str(run_dir), "--data", str(files[("second", "train")])])
    assert done.exit_code == 2 and "Cannot save the model" in done.output and "StorageFull" in done.output, done.output
    monkeypatch.undo()
    assert sorted(p.name for p in (run_dir / "versions").iterdir()) == ["v1"]
    versions = runner.invoke(app, ["runs", "versions", str(run_dir)])
    assert versions.exit_code == 0 and "None" not in versions.output
    assert read_status(run_dir) == "finished"


def test_update_refuses_a_file_that_train_refuses(tmp_path):
    recipe, files = _continual(tmp_path, epochs=1)
    recipe["experiences"] = recipe["experiences"][:1]
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    (tmp_path / "one_class.csv").write_text("text,label\n" + "".join(f"movie {i} good,positive\n" for i in range(30)))
    done = runner.invoke(app, ["update", str(run_dir), "--data", str(tmp_path / "one_class.csv")])
    assert done.exit_code == 2 and "data check" in done.output, done.output
    assert json.loads((run_dir / "continual.json").read_text())["current"] == 1
