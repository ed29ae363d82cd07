"""Runs never lose work: periodic atomic checkpoints, and a resumed run ends where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import tunesmith.engine.loop
from tunesmith.cli import app
from tunesmith.engine import checkpoint as ckpt
from tunesmith.errors import TunesmithError
from tunesmith.pipeline import run
from tunesmith.runs.rundir import read_status

runner = CliRunner()


def _recipe(toy_data, **train):
    base = {
        **toy_data["recipe"]["train"],
        "epochs": 3,
        "log_every": 1,
        "save_steps": 4,
        "early_stopping": {"patience": None},
        **train,
    }
    return {**toy_data["recipe"], "train": base, "eval": {"baseline": "none"}}


def _max_weight_diff(a, b) -> float:
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def _interrupt_at(monkeypatch, at_step: int):
    """Ctrl-C right after the optimizer step `at_step` (steps after the last checkpoint are lost)."""
    original = tunesmith.engine.loop._write

    def write(handle, record):
        original(handle, record)
        if record.get("step") == at_step and "loss" in record:
            raise KeyboardInterrupt

    monkeypatch.setattr(tunesmith.engine.loop, "_write", write)


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(toy_data, tmp_path, monkeypatch):
    recipe = _recipe(toy_data)  # 160 rows / 16 = 10 steps per epoch, 3 epochs, checkpoint every 4 steps
    whole = run(recipe, output_dir=tmp_path / "whole")
    _interrupt_at(monkeypatch, 13)  # mid-epoch 2, one step after the step-12 checkpoint
    with pytest.raises(KeyboardInterrupt):
        run(recipe, output_dir=tmp_path / "cut")
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert read_status(cut) == "interrupted"
    saved = ckpt.load(cut / ckpt.CHECKPOINT_FILE)
    assert saved["position"]["step"] == 12 and saved["position"]["epoch"] == 2
    refused = runner.invoke(app, ["predict", str(cut), str(toy_data["paths"]["test"]), "-o", str(tmp_path / "p.csv")])
    assert refused.exit_code == 2 and "not finished" in refused.output and "--resume" in refused.output

    resumed = runner.invoke(app, ["train", "--resume", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    assert read_status(cut) == "finished" and not (cut / ckpt.CHECKPOINT_FILE).exists()
    assert _max_weight_diff(whole.run_dir, cut) < 1e-6
    tuned = json.loads((cut / "metrics.json").read_text())["tuned"]
    assert tuned["loss"] == pytest.approx(whole.metrics["tuned"]["loss"], abs=1e-6)
    assert tuned["accuracy"] == whole.metrics["tuned"]["accuracy"]
    records = [json.loads(line) for line in (cut / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(
        range(1, 31)
    )  # the lost step 13 is logged once, after resume


def test_sigkill_mid_run_then_resume_matches(toy_data, tmp_path):
    recipe = _recipe(toy_data, batch_size=4, epochs=4, save_steps=20)  # 160 steps
    whole = run(recipe, output_dir=tmp_path / "whole")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cut = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "train", str(path), "-o", str(cut)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (cut / ckpt.CHECKPOINT_FILE).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_status(cut) == "interrupted"  # killed mid-run: run.json still says running, its process is gone
    listed = runner.invoke(app, ["runs", "list", str(tmp_path)])
    assert listed.exit_code == 0 and "interrupted" in listed.output and "finished" in listed.output
    assert f"{cut.name}: tunesmith train --resume {cut}\n" in listed.output  # whole on its line, to copy
    resumed = runner.invoke(app, ["train", "--resume", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    assert _max_weight_diff(whole.run_dir, cut) < 1e-6


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / ckpt.CHECKPOINT_FILE
    ckpt.save(path, {"position": {"step": 4}, "weights": torch.ones(3)})

    def disk_full(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(TunesmithError, match="No space left.*previous checkpoint is intact"):
        ckpt.save(path, {"position": {"step": 8}})
    monkeypatch.undo()
    assert ckpt.load(path)["position"]["step"] == 4
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.CHECKPOINT_FILE]  # no temporary file left behind


def test_ctrl_c_while_saving_waits_for_the_checkpoint_then_interrupts(tmp_path, monkeypatch):
    """A SIGINT inside torch.save broke its zip writer (a RuntimeError: the run read as failed, not interrupted)."""
    path, real_save = tmp_path / ckpt.CHECKPOINT_FILE, torch.save

    def interrupted(obj, handle):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the file is being written
        handle.write(b"")  # a Python call, where a handler would have run at once
        real_save(obj, handle)

    monkeypatch.setattr(torch, "save", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in `tunesmith train`
    try:
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(path, {"position": {"step": 8}, "weights": torch.ones(3)})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert ckpt.load(path)["position"]["step"] == 8  # written whole first
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.CHECKPOINT_FILE]


def test_a_damaged_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT_FILE
    path.write_bytes(b"\x00garbage")
    with pytest.raises(TunesmithError, match="damaged"):
        ckpt.load(path)
    assert ckpt.load(tmp_path / "absent.pt") is None


def test_resume_refuses_finished_runs_and_foreign_folders(toy_data, tmp_path):
    done = run(_recipe(toy_data, epochs=1), output_dir=tmp_path / "done").run_dir
    again = runner.invoke(app, ["train", "--resume", str(done)])
    assert again.exit_code == 2 and "already finished" in again.output
    empty = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "no recipe.yaml" in empty.output
    fresh = runner.invoke(app, ["train", str(tmp_path / "recipe.yaml")])
    assert fresh.exit_code == 2


def test_lora_chat_run_resumes_to_the_same_adapter(tmp_path, monkeypatch):
    import pandas as pd

    rows = [
        {"prompt": f"where is order {i}", "response": "track_order" if i % 2 else "cancel_order"} for i in range(48)
    ]
    pd.DataFrame(rows).to_json(tmp_path / "chat.jsonl", orient="records", lines=True)
    recipe = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": {"train": str(tmp_path / "chat.jsonl")},
        "method": {"lora": {"r": 4}},
        "eval": {"max_samples": 2},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "lr": 1e-3,
            "log_every": 1,
            "save_steps": 3,
            "early_stopping": {"patience": None},
        },
    }
    whole = run(recipe, output_dir=tmp_path / "whole").run_dir
    _interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        run(recipe, output_dir=tmp_path / "cut")
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output
    a = load_file(str(whole / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
