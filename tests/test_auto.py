"""`auto` train settings (epochs, batch, lr chosen from the data, printed and saved; explicit values win) and the memory
fit (micro-batches with accumulation keep the effective batch; a run that cannot fit is refused before it starts)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import tunesmith
from tunesmith.engine.hardware import resolve_precision
from tunesmith.errors import TunesmithError
from tunesmith.recipe import load_recipe
from tunesmith.runs import auto

SMOLLM2 = {"layers": 30, "hidden": 576, "inter": 1536, "vocab": 49152, "params": 134.5e6}


def test_epochs_give_small_sets_enough_steps_and_large_sets_fewer_passes():
    assert auto.choose_epochs(8000, 32, "encoder") == 3  # sst2-sized: today's 3 passes
    small = auto.choose_epochs(200, 8, "encoder")  # 25 steps a pass
    assert small == 10 and auto.choose_epochs(1500, 16, "decoder") * 94 >= auto.MIN_STEPS
    assert auto.choose_epochs(67000, 32, "encoder") == 1.5  # 100k examples at most
    assert auto.choose_epochs(50000, 32, "decoder") == 1.0


def test_free_text_generation_keeps_three_passes_unless_the_set_is_tiny():
    # label-like answers are raised toward MIN_STEPS like classification; free text only to MIN_FREE_TEXT_EXAMPLES
    assert auto.choose_epochs(100, 8, "decoder") == 10 and auto.choose_epochs(100, 8, "decoder", free_text=True) == 3
    assert (
        auto.choose_epochs(60, 8, "decoder", free_text=True) == 5
        and auto.choose_epochs(20, 8, "decoder", free_text=True) == 10
    )
    assert auto.choose_epochs(50000, 32, "decoder", free_text=True) == 1.0


def test_small_sets_per_class_get_the_few_shot_hint_larger_ones_do_not():
    assert (
        "method: few_shot" in auto.few_shot_hint(64, 3)[0] and "21 examples per class" in auto.few_shot_hint(64, 3)[0]
    )
    assert (
        auto.few_shot_hint(160, 2) == [] and auto.few_shot_hint(33 * 5, 5) == [] and auto.few_shot_hint(32 * 5, 5) != []
    )


def test_lora_rate_falls_with_model_size():
    assert auto.lora_rate(135e6) > auto.lora_rate(1.7e9) > auto.lora_rate(7e9) == 2e-4


def test_the_estimate_matches_a_measured_peak():
    # SmolLM2-135M LoRA, batch 8 x 256 tokens, half the positions labelled: 6.2 GB peak RSS measured (fp32, this CPU);
    # with activation checkpointing 3.4 GB. The estimate must be of that size and never far below it.
    plain = auto.estimate_mb(SMOLLM2, 8 * 256, SMOLLM2["params"] * 0.02, True, False)
    ckpt = auto.estimate_mb(SMOLLM2, 8 * 256, SMOLLM2["params"] * 0.02, True, True)
    assert 6200 * 0.9 <= plain <= 6200 * 1.5 and 3400 * 0.9 <= ckpt <= 3400 * 1.5 and ckpt < plain


def test_unset_keys_are_chosen_from_the_data_printed_and_saved(toy_data, tmp_path, logged):
    recipe = {**toy_data["recipe"], "train": {"lr": "auto", "warmup_ratio": 0.0}}  # 160 rows, 2 labels
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]
    assert saved["batch_size"] == 8 and saved["epochs"] == 10  # 20 steps a pass: 10 passes for >= 250 steps
    assert result.metrics["train"]["lr"] == pytest.approx(saved["lr"]) and saved["lr"] < 2e-4  # sqrt(8/32) of the rate
    assert "auto: 160 examples, 2 labels -> epochs 10, batch 8, lr" in logged()
    assert any("160 examples" in r for r in result.metrics["train"]["auto"])


def test_explicit_values_win(toy_data, tmp_path):
    result = tunesmith.run(toy_data["recipe"], output_dir=tmp_path / "run")  # epochs 5, lr 3e-3, batch 16
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]
    assert (saved["epochs"], saved["batch_size"], saved["lr"]) == (5, 16, 3e-3) and result.metrics["train"][
        "lr"
    ] == 3e-3
    assert not any("examples" in r for r in result.metrics["train"]["auto"])


def lengthen(paths: dict, share: float) -> None:
    """Make `share` of each split's texts ~300 tokens long (the label words stay at the start)."""
    import pandas as pd

    for path in paths.values():
        frame = pd.read_csv(path)
        long = frame.index[: int(len(frame) * share)]
        frame.loc[long, "text"] = frame.loc[long, "text"] + " and then" * 100
        frame.to_csv(path, index=False)


def test_max_length_rises_for_long_texts_is_printed_saved_and_predicted_with(toy_data, tmp_path, logged):
    lengthen(toy_data["paths"], 0.2)  # 20% of texts past 256 tokens: their 95th percentile, in steps of 64, up to 512
    result = tunesmith.run(toy_data["recipe"], output_dir=tmp_path / "run")
    chosen = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["max_length"]
    assert 256 < chosen < 512 and chosen % 64 == 0 and result.metrics["train"]["truncated"] == 0  # nothing cut
    printed = logged()
    assert f"auto: max_length {chosen}: 20% of the training texts are longer than 256 tokens" in printed
    assert "exceed train.max_length" not in printed  # the data check measured against what training uses
    assert tunesmith.Predictor.load(result.run_dir).max_length == chosen


def test_max_length_stays_for_short_texts_and_a_set_value_wins(toy_data):
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.runs.auto_length import auto_max_length

    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    short, long = ["good film"] * 100, ["good film"] * 90 + ["word " * 1000] * 10
    unset = load_recipe(toy_data["recipe"])
    assert auto_max_length(unset, tokenizer, short) == (unset, None) and unset.train.max_length == 256
    chosen, reason = auto_max_length(unset, tokenizer, long)
    assert chosen.train.max_length == 512 and "10% of the training texts" in reason  # capped at the model's 512
    assert unset.train.max_length == 256  # a copy: seeds and stages reuse the caller's recipe
    for given in (128, 256):
        explicit = load_recipe({**toy_data["recipe"], "train": {"max_length": given}})
        assert auto_max_length(explicit, tokenizer, long) == (explicit, None)
    assert load_recipe({**toy_data["recipe"], "train": {"max_length": "auto"}}).train.max_length == 256


def test_a_batch_that_does_not_fit_is_split_into_micro_batches(toy_data, tmp_path, logged):
    half = resolve_precision(load_recipe(toy_data["recipe"]).train.precision) == "bf16"  # as the run will train
    dims = auto.model_dims(tunesmith.models.loading.resolve_weights("tiny-bert"))
    one = auto.estimate_mb(dims, 16 * 12, dims["params"], False, False, half)  # batch 16 of 12 tokens, all trained
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "memory_budget_gb": one / 1024 * 0.6}}
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]
    assert saved["batch_size"] < 16 and saved["batch_size"] * saved["grad_accum"] >= 16
    assert result.metrics["train"]["effective_batch_size"] == saved["batch_size"] * saved["grad_accum"]
    assert "same effective batch" in logged()


def test_an_impossible_setting_is_refused_before_the_run_starts(toy_data, tmp_path):
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "memory_budget_gb": 1e-4}}
    with pytest.raises(TunesmithError, match="will not fit in memory.*train.max_length"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_killed_run_reads_interrupted_with_the_memory_hint(toy_data, tmp_path):
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 200}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    for _ in range(600):
        if (tmp_path / "run" / "train_log.jsonl").is_file():
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # what the OOM killer does: no handler runs
    proc.wait()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "running"  # what the file says...
    from tunesmith.runs.rundir import read_status

    assert read_status(tmp_path / "run") == "interrupted"  # ...and what tunesmith reads: the process is gone
    with pytest.raises(TunesmithError, match="out of memory.*memory_budget_gb"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")
