"""What a hostile or careless input must never do: run code, replace the user's files, pass a broken model
off as finished, or give a quietly wrong answer (the cases that are not error messages)."""

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import tunesmith
from tests.hostile import fake_run, plant_pickle, toy_recipe
from tunesmith.cli import app
from tunesmith.data.readers import read_table
from tunesmith.runs import rundir as runs

runner = CliRunner()


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


# ------------------------------------------------------------------ files tunesmith did not write


def test_train_into_the_current_folder_keeps_the_users_files(tmp_path, monkeypatch):
    mine = {"recipe.yaml": yaml.safe_dump(toy_recipe(tmp_path)), "report.md": "my notes", "metrics.json": '{"mine": 1}'}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    result, text = _cli("train", "recipe.yaml", "-o", ".")
    assert result.exit_code == 2 and "not empty" in text
    assert {name: (tmp_path / name).read_text() for name in mine} == mine
    assert not (tmp_path / "run.json").exists()


def test_overwrite_replaces_only_what_the_run_wrote(tmp_path):
    recipe = toy_recipe(tmp_path)
    tunesmith.run(recipe, output_dir=tmp_path / "run")
    (tmp_path / "run" / "my_analysis.ipynb").write_text("keep me")
    (tmp_path / "run" / "seed-99").mkdir()  # a stale folder of an earlier multi-seed run: tunesmith's own
    result = tunesmith.run(recipe, output_dir=tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "my_analysis.ipynb").read_text() == "keep me"
    assert not (tmp_path / "run" / "seed-99").exists()
    assert runs.read_status(result.run_dir) == "finished"


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    live = fake_run(tmp_path)  # this very process, with its real start time: alive
    runs.set_status(live, "running")
    assert runs.read_status(live) == "running"
    info = json.loads((live / "run.json").read_text())
    info["started"] += 1  # same pid, another process start: the pid was reused
    (live / "run.json").write_text(json.dumps(info))
    assert runs.read_status(live) == "interrupted"
    info.update(pid=2**22 + 11, started=None, host=socket.gethostname())
    (live / "run.json").write_text(json.dumps(info))
    assert runs.read_status(live) == "interrupted"


# ------------------------------------------------------------------ nothing runs code


def test_planted_pickles_are_refused_and_never_run(tmp_path):
    from tunesmith.engine.checkpoint import load_tensors_file
    from tunesmith.errors import TunesmithError
    from tunesmith.methods.continual import _load_ewc

    marker = tmp_path / "pwned"
    with pytest.raises(TunesmithError, match="never loads"):
        load_tensors_file(plant_pickle(tmp_path / "checkpoint.pt", marker), "")
    plant_pickle(tmp_path / "v1" / "ewc.pt", marker)
    with pytest.raises(TunesmithError, match="never loads"):
        _load_ewc(tmp_path / "v1")
    assert not marker.exists()


def test_checkpoints_load_weights_only(tmp_path):
    """Everything the loop saves (RNG states included) reads back with weights_only=True, and restores exactly."""
    import random

    import torch

    from tunesmith.engine import checkpoint

    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    state = checkpoint.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.save(tmp_path / "c.pt", {"rng": state, "score": np.float64(0.5), "betas": (0.9, 0.999)})
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    checkpoint.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert loaded["score"] == 0.5 and isinstance(loaded["score"], float)


# ------------------------------------------------------------------ broken training is not "finished"


def test_a_diverging_run_is_marked_failed_with_the_step(tmp_path):
    recipe = toy_recipe(tmp_path, lr=1e30, precision="fp32")
    result, text = _cli("train", _write(tmp_path / "r.yaml", recipe), "-o", tmp_path / "run")
    assert result.exit_code == 2 and "training loss became" in text and "optimizer step" in text
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "loss became" in info["error"]
    assert not (tmp_path / "run" / "model").exists()


def _write(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe))
    return path


# ------------------------------------------------------------------ quietly wrong answers


def test_macro_averages_skip_labels_absent_from_the_file():
    from tunesmith.engine.metrics import classification_metrics

    # three labels in the run, the file holds two, every prediction right: macro-F1 must be 1.0, not 2/3
    metrics = classification_metrics([0, 1, 0, 1], [0, 1, 0, 1], ["a", "b", "c"])
    assert metrics["accuracy"] == metrics["f1_macro"] == metrics["precision_macro"] == 1.0
    assert metrics["per_class"]["c"]["support"] == 0  # still listed per class
    wrong = classification_metrics([0, 0], [0, 2], ["a", "b", "c"])  # a predicted absent label counts
    assert wrong["f1_macro"] == pytest.approx((2 / 3 + 0) / 2)


def test_collapse_and_worse_than_base_are_warned_in_the_report():
    from tunesmith.engine.metrics import outcome_warnings
    from tunesmith.runs.report import warnings_section

    metrics = {
        "labels": ["neg", "pos"],
        "eval_set": "test",
        "base": {"f1_macro": 0.7},
        "tuned": {"f1_macro": 0.33, "confusion_matrix": [[5, 0], [5, 0]]},
    }
    found = outcome_warnings(metrics)
    assert any("predicts 'neg' for every one of the 10" in w for w in found)
    assert any("worse than the base model" in w and "0.3300 vs 0.7000" in w for w in found)
    assert "## Warnings" in warnings_section({"outcome_warnings": found})
    assert outcome_warnings({"base": {"loss": 2.0}, "tuned": {"loss": 1.5}}) == []
    assert outcome_warnings({"base": {"loss": 1.0}, "tuned": {"loss": 1.5}})  # generation without answers: loss


def test_numbers_as_labels_are_one_class_across_files(tmp_path):
    from tunesmith.data.classification import load_classification
    from tunesmith.recipe import DataSection

    pd.DataFrame({"text": [f"t{i}" for i in range(8)], "label": ["1", "0"] * 4}).to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"v{i}", "label": float(i % 2)}) for i in range(4)))
    data = load_classification(DataSection(train=str(tmp_path / "a.csv"), validation=str(tmp_path / "b.jsonl")), 0)
    assert data.labels == ["0", "1"] and sorted(set(data.validation.labels)) == ["0", "1"]


def test_labels_that_differ_only_in_case_are_warned(tmp_path):
    from tunesmith.data.classification import load_classification
    from tunesmith.recipe import DataSection

    pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["Positive", "positive", "negative"] * 3}).to_csv(
        tmp_path / "a.csv", index=False
    )
    data = load_classification(DataSection(train=str(tmp_path / "a.csv")), 0)
    assert any("'Positive', 'positive'" in w and "differ only in case" in w for w in data.warnings)


def test_semicolon_csv_and_byte_order_mark_are_read(tmp_path):
    (tmp_path / "semi.csv").write_text("text;label\ngood;pos\nbad;neg\n")
    (tmp_path / "bom.csv").write_bytes("text,label\ngood,pos\n".encode("utf-8-sig"))
    assert list(read_table(tmp_path / "semi.csv").columns) == ["text", "label"]
    assert list(read_table(tmp_path / "bom.csv").columns) == ["text", "label"]


def test_texts_without_a_known_token_are_counted(tmp_path):
    from tunesmith.engine.batching import unknown_only
    from tunesmith.models.loading import load_tokenizer, resolve_weights

    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    rows = [{"input_ids": tokenizer(t)["input_ids"]} for t in ("😀😀", "שלום", "the movie", "the 😀")]
    assert unknown_only(tokenizer, rows) == 2


# ------------------------------------------------------------------ recipes as people write them


def test_recipe_shorthands_and_shared_experience_columns(tmp_path):
    from tunesmith.recipe import load_recipe

    recipe = load_recipe({"model": "tiny-bert", "method": "few_shot", "data": {"train": "x.csv"}})
    assert recipe.model.name == "tiny-bert" and recipe.method.name == "few_shot"
    overridden = load_recipe(
        {"model": "tiny-bert", "method": "few_shot", "data": {"train": "x.csv"}},
        ["model.name=tiny-llama", "method.pairs_per_example=4"],
    )
    assert overridden.model.name == "tiny-llama" and overridden.method.pairs_per_example == 4
    continual = load_recipe(
        {
            "model": "tiny-bert",
            "method": {"name": "continual"},
            "data": {"text_column": "body", "label_column": "intent"},
            "experiences": [
                {"name": "a", "data": {"train": "a.csv"}},
                {"name": "b", "data": {"train": "b.csv", "label_column": "topic"}},
            ],
        }
    )
    assert [e.data.text_column for e in continual.experiences] == ["body", "body"]
    assert [e.data.label_column for e in continual.experiences] == ["intent", "topic"]


def test_runs_list_skips_a_damaged_run_with_a_note(tmp_path):
    good = fake_run(tmp_path / "good")
    deep = "[" * 100_000 + "]" * 100_000  # json raises RecursionError, not a ValueError
    for name, content in (("list", "[1, 2]"), ("cut", '{"status": "fini'), ("deep", deep)):
        bad = fake_run(tmp_path / name)
        (bad / "run.json").write_text(content)
    weird = fake_run(tmp_path / "weird")
    (weird / "recipe.yaml").write_text("just a string\n")
    folder = tmp_path / "all"
    folder.mkdir()
    for d in (good, tmp_path / "list" / "run", tmp_path / "cut" / "run", tmp_path / "deep" / "run", weird):
        d.rename(folder / d.parent.name)
    result, text = _cli("runs", "list", folder)
    assert result.exit_code == 0, text
    assert "finished" in text and text.count("damaged") >= 4 and "deep: run.json damaged" in text


# ------------------------------------------------------------------ generation never fails on one prompt, never hangs


def test_an_overlong_prompt_is_cut_and_every_prompt_answered(logged):
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.tasks.generation.formatting import ensure_chat_template
    from tunesmith.tasks.generation.generate import generate

    weights = resolve_weights("tiny-llama")
    model, tokenizer = load_causal_lm(weights), load_tokenizer(weights)
    ensure_chat_template(tokenizer)
    context = model.config.max_position_embeddings
    answers = generate(model, tokenizer, ["where is my order " * context, "hello"], max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert "cut to their last" in logged()


def test_a_failing_generation_ends_the_stream_instead_of_hanging(monkeypatch):
    import threading

    from tunesmith.errors import TunesmithError
    from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
    from tunesmith.tasks.generation import predictor as module

    weights = resolve_weights("tiny-llama")
    chat = module.GenerativePredictor(load_causal_lm(weights), load_tokenizer(weights))

    def broken(*args, **kwargs):
        raise TypeError("TextEncodeInput must be Union[...]")

    monkeypatch.setattr(module, "generate", broken)
    outcome = {}

    def consume():
        try:
            outcome["pieces"] = list(chat.stream([{"role": "user", "content": "hi"}]))
        except TunesmithError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "the stream hung"
    assert "generation failed" in outcome.get("error", "")


def test_chat_survives_a_line_that_is_not_utf8(tmp_path):
    """A real `tunesmith chat` process fed a non-UTF-8 byte answers and exits (a timeout means it hung)."""
    import subprocess
    import sys

    result = tunesmith.run(
        {
            "task": "generation",
            "model": {"name": "tiny-llama"},
            "data": {"train": _chat_file(tmp_path)},
            "method": {"tuning": "full"},
            "train": {"epochs": 1, "batch_size": 8},
            "eval": {"max_samples": 2, "max_new_tokens": 4},
        },
        output_dir=tmp_path / "run",
    )
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:surrogateescape"}
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith", "chat", str(result.run_dir), "--max-new-tokens", "4"],
        input=b"caf\xe9 \xff order\nwhere is my order\n/exit\n",
        capture_output=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert done.stdout.decode(errors="replace").count("model>") == 2
    assert b"Traceback" not in done.stderr


def _chat_file(tmp_path) -> str:
    rows = [{"prompt": f"where is my order {i}", "response": "track_order"} for i in range(24)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return str(tmp_path / "chat.jsonl")


# ------------------------------------------------------------------ one process, many runs


def test_runs_with_other_precisions_follow_each_other_in_one_process(tmp_path):
    """A notebook: a bf16 run, an fp32 run, beside the user's own Accelerator (whose settings survive)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(), GradientState._reset_state()  # a fresh kernel (earlier tests ran in this process)
    mine = Accelerator(mixed_precision="no", cpu=True)
    first = tunesmith.run(toy_recipe(tmp_path, precision="bf16"), output_dir=tmp_path / "bf16")
    second = tunesmith.run(toy_recipe(tmp_path, precision="fp32"), output_dir=tmp_path / "fp32")
    assert first.metrics["train"]["precision"] == "bf16" and second.metrics["train"]["precision"] == "fp32"
    assert mine.mixed_precision == "no" and Accelerator(mixed_precision="no", cpu=True).mixed_precision == "no"


def test_plots_label_their_values(tmp_path):
    recipe = toy_recipe(tmp_path)
    recipe["eval"] = {"baseline": "linear_probe"}
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    plots = result.run_dir / "plots"
    for name in ("loss.png", "base_vs_tuned.png", "confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (plots / name).stat().st_size > 5_000, name
    assert "confusion_matrix_normalized.png" in (result.run_dir / "report.md").read_text()


def test_disk_full_names_the_file_and_leaves_no_empty_temp_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.suffix == ".tmp":
            self.touch()  # the file is created, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as caught:
        runs.write_json(tmp_path / "metrics.json", {"a": 1})
    assert caught.value.filename == str(tmp_path / "metrics.json") and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "run.json").write_bytes(b'{"status": "running"}')
    runs.set_status(tmp_path, "failed", error="disk full")  # rewritten in place when no new file fits
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_a_checkpoint_written_before_weights_only_still_resumes(tmp_path):
    """Earlier versions pickled NumPy's RNG state (an array): it loads weights-only and restores the same stream."""
    import random

    import torch

    from tunesmith.engine import checkpoint

    np.random.seed(7)
    torch.save(
        {
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": None,
            }
        },
        tmp_path / "old.pt",
    )
    expected = np.random.rand()
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "old.pt")["rng"])
    assert np.random.rand() == expected
