"""Data-parallel training: 2 processes over gloo take the same steps as 1 process with the same global batch."""

import json
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from tunesmith.pipeline import run


def _recipe(toy_data, batch_size: int, precision: str) -> dict:
    train = {
        **toy_data["recipe"]["train"],
        "batch_size": batch_size,
        "epochs": 4,
        "dropout": 0.0,
        "log_every": 1,
        "early_stopping": {"patience": None},
        "precision": precision,
    }
    return {**toy_data["recipe"], "train": train, "eval": {"baseline": "none"}}


# Precision is pinned, never `auto`: on CPUs with native bf16, auto picks bf16, whose rounding differs with the
# summation order. fp32 must match to float noise (each process pads its half of a batch to its own longest row, so
# the matmul shapes differ too: up to 4e-5 measured); bf16 (both paths run on every machine) within its precision.
TOLERANCE = {"fp32": {"weights": 1e-4, "loss": 1e-4}, "bf16": {"weights": 3e-2, "loss": 3e-2}}


def _two_processes(recipe: dict, tmp_path) -> dict:
    """The recipe trained by `tunesmith train --nproc 2` into tmp_path/two; its metrics."""
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith", "train", str(path), "-o", str(tmp_path / "two"), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / "two" / "metrics.json").read_text())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_gloo_processes_match_one_process(toy_data, tmp_path, precision):
    bar = TOLERANCE[precision]
    one = run(_recipe(toy_data, 16, precision), output_dir=tmp_path / "one")
    two_recipe = _recipe(toy_data, 8, precision)  # 8 per process x 2 processes = the same global batch
    two_recipe["train"]["report_to"] = ["tensorboard"]  # a tracker: only rank 0 may log to it
    two = _two_processes(two_recipe, tmp_path)
    assert two["train"]["processes"] == 2 and two["train"]["effective_batch_size"] == 16
    assert one.metrics["train"]["processes"] == 1 and one.metrics["train"]["effective_batch_size"] == 16
    assert one.metrics["train"]["precision"] == two["train"]["precision"] == precision
    assert two["tuned"]["loss"] == pytest.approx(one.metrics["tuned"]["loss"], abs=bar["loss"])
    assert min(two["tuned"]["accuracy"], one.metrics["tuned"]["accuracy"]) >= 0.9  # both learned
    a = load_file(str(one.run_dir / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < bar["weights"]  # summation order only
    if precision == "fp32":
        assert two["tuned"]["accuracy"] == one.metrics["tuned"]["accuracy"]  # identically
        assert two["tuned"]["f1_macro"] == pytest.approx(one.metrics["tuned"]["f1_macro"], abs=1e-6)
    # rank 0 alone writes: every training step is logged once, and the run finished once
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == list(range(1, 41))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list((tmp_path / "two" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(tmp_path / "two" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 41))
    assert json.loads((tmp_path / "two" / "run.json").read_text())["status"] == "finished"
    assert "peak_rss_mb" in two["memory"]


@pytest.mark.parametrize("method", ["supervised", "preference"])
def test_two_gloo_processes_tune_a_decoder_as_one_process_does(tmp_path, method):
    """The decoder losses call the model's parts (its body, then the head on answer tokens alone); under a
    data-parallel wrapper the wrapper's own forward must run, or the gradients are never averaged."""
    rows = [
        {"prompt": f"order {i} {w}", "response": f"{w} {i % 3}", "chosen": f"{w} {i % 3}", "rejected": f"no {w}"}
        for i in range(48)
        for w in ["late"]
    ]
    for name, part in (("train", rows[:40]), ("validation", rows[40:])):
        keep = ("prompt", "chosen", "rejected") if method == "preference" else ("prompt", "response")
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps({k: r[k] for k in keep}) for r in part))
    recipe = {
        "task": "generation",
        "model": "tiny-llama",
        "method": {"name": method, "lora": {"dropout": 0.0}},  # no per-process randomness
        "data": {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "validation.jsonl")},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "precision": "fp32", "dropout": 0.0, "warmup_ratio": 0.0},
        "eval": {"baseline": "none", "max_samples": 0 if method == "supervised" else 2, "max_new_tokens": 2},
    }
    one = run(recipe, output_dir=tmp_path / "one")
    two = _two_processes({**recipe, "train": {**recipe["train"], "batch_size": 4}}, tmp_path)
    assert two["train"]["processes"] == 2 and two["train"]["effective_batch_size"] == 8
    assert two["tuned"]["loss"] == pytest.approx(one.metrics["tuned"]["loss"], abs=1e-3)
    a = load_file(str(one.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # the same steps: summation order only
