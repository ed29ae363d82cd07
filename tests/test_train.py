"""The shared loop on a tiny model: it learns, it is repeatable, LoRA freezes the body, early stopping stops."""

import json

import pytest
import torch

from tunesmith.methods.supervised import class_weight_tensor
from tunesmith.models.loading import apply_lora, load_classifier, resolve_weights
from tunesmith.pipeline import run
from tunesmith.recipe import LoraSection


def test_tiny_model_learns_the_toy_task(toy_data, tmp_path):
    result = run(toy_data["recipe"], output_dir=tmp_path / "run")
    m = result.metrics
    assert m["tuned"]["accuracy"] >= 0.9
    assert m["tuned"]["accuracy"] > m["base"]["accuracy"] - 0.05 or m["tuned"]["accuracy"] == 1.0
    assert set(m["base"]) >= {"accuracy", "f1_macro", "precision_macro", "recall_macro"}
    assert m["eval_set"] == "test" and m["train"]["best_epoch"] >= 1
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in log)


def test_same_seed_same_result(toy_data, tmp_path):
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
    a = run(recipe, output_dir=tmp_path / "a").metrics["tuned"]
    b = run(recipe, output_dir=tmp_path / "b").metrics["tuned"]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


@pytest.mark.parametrize("max_steps, epochs_run", [(3, 1), (25, 2)])
def test_max_steps_bounds_the_run_by_optimizer_steps_whatever_epochs_says(toy_data, tmp_path, max_steps, epochs_run):
    train = {**toy_data["recipe"]["train"], "epochs": 10, "max_steps": max_steps, "log_every": 1, "batch_size": 8}
    result = run({**toy_data["recipe"], "train": train}, output_dir=tmp_path / "r")
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, max_steps + 1))
    evals = [r for r in log if "eval" in r]  # every epoch it reached, the last one partial
    assert len(evals) == epochs_run == result.metrics["train"]["epochs"] and evals[-1]["step"] == max_steps


@pytest.mark.parametrize("min_epochs, least", [("auto", 5), (1, 2), (7, 7)])
def test_early_stopping_stops_when_metric_stalls_but_not_before_min_epochs(toy_data, tmp_path, min_epochs, least):
    stopping = {"metric": "loss", "patience": 1, "min_epochs": min_epochs}  # 'auto': half of the 10 planned epochs
    train = {**toy_data["recipe"]["train"], "lr": 1e-9, "epochs": 10, "early_stopping": stopping}
    metrics = run({**toy_data["recipe"], "train": train}, output_dir=tmp_path / "r").metrics
    assert least <= metrics["train"]["epochs"] < 10


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_trainable_parameters_change_and_frozen_ones_do_not(mode):
    torch.manual_seed(0)
    model = load_classifier(resolve_weights("tiny-bert"), ["a", "b"])
    if mode == "lora":
        model = apply_lora(model, LoraSection(r=4), {"lora_targets": ["query", "value"]})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3], [2, 12, 13, 3]]), "labels": torch.tensor([0, 1])}
    model(**batch).loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0:
            assert changed, name
        if not p.requires_grad:
            assert not changed, name
    if mode == "lora":
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n or "classifier" in n for n in trainable)


def test_balanced_class_weights_follow_sklearn_formula():
    weights = class_weight_tensor("balanced", ["a", "b"], ["a", "a", "a", "b"])
    assert weights.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    assert class_weight_tensor({"b": 3.0}, ["a", "b"], ["a", "b"]).tolist() == [1.0, 3.0]


def test_class_weights_run_end_to_end(toy_data, tmp_path):
    recipe = {
        **toy_data["recipe"],
        "method": {"name": "supervised", "class_weights": "balanced", "freeze_embeddings": False},
    }
    assert run(recipe, output_dir=tmp_path / "r").metrics["tuned"]["accuracy"] >= 0.8


def test_lora_run_saves_a_merged_plain_model(toy_data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    recipe = {**toy_data["recipe"], "method": {"name": "supervised", "lora": {"r": 4}}}
    result = run(recipe, output_dir=tmp_path / "r")
    model = AutoModelForSequenceClassification.from_pretrained(result.run_dir / "model")
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_best_weights_are_restored_and_only_trainable_ones_are_copied():
    import torch

    from tunesmith.engine.loop import _State

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    state = _State(stop_metric="loss", patience=1)
    assert state.update(1, {"loss": 0.5}, model)
    best = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    assert not state.update(2, {"loss": 0.9}, model) and state.should_stop(2)
    assert set(state.best_weights) == {"1.weight", "1.bias"}
    state.restore(model)
    assert torch.equal(model[1].weight, best) and state.best_epoch == 1


def test_patience_does_not_end_a_run_before_min_epochs():
    import torch

    from tunesmith.engine.loop import _State

    model = torch.nn.Linear(2, 1)
    state = _State(stop_metric="accuracy", patience=1, min_epochs=3)
    for epoch, value in enumerate([0.62, 0.55, 0.52], start=1):  # a small set's new head, still at chance
        state.update(epoch, {"accuracy": value}, model)
        assert state.should_stop(epoch) == (epoch == 3)


def test_a_later_epoch_within_the_validation_noise_is_kept_a_real_drop_is_not():
    import torch

    from tunesmith.engine.loop import _State

    model = torch.nn.Linear(2, 1)
    state = _State(stop_metric="accuracy", patience=None, rows=250)  # one standard error at 0.6: 0.031
    assert state.update(1, {"accuracy": 0.60}, model)
    assert state.update(2, {"accuracy": 0.58}, model) and state.best_epoch == 2  # 2 points under the top: noise
    assert not state.update(3, {"accuracy": 0.55}, model) and state.best_epoch == 2  # 5 points under: overfitting
    assert state.bad_epochs == 2  # patience still counts epochs without a new top
    assert state.update(4, {"accuracy": 0.61}, model) and state.best_epoch == 4 and state.bad_epochs == 0


def test_without_validation_rows_or_for_loss_only_a_strictly_better_epoch_is_kept():
    import torch

    from tunesmith.engine.loop import _State

    model = torch.nn.Linear(2, 1)
    shares = _State(stop_metric="accuracy", patience=None)
    assert shares.update(1, {"accuracy": 0.60}, model) and not shares.update(2, {"accuracy": 0.59}, model)
    loss = _State(stop_metric="loss", patience=None, rows=250)
    assert loss.update(1, {"loss": 0.50}, model) and not loss.update(2, {"loss": 0.51}, model) and loss.best_epoch == 1


def test_classification_hooks_carry_the_validation_size():
    from types import SimpleNamespace

    from tunesmith.methods.supervised import make_hooks

    recipe = SimpleNamespace(method=SimpleNamespace(class_weights="none"))
    assert make_hooks(recipe, ["a", "b"], ["a", "b"], lambda m: {}, 250).validation_rows == 250


def test_head_lr_applies_to_the_new_head_only():
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.engine.loop import optimizer_for

    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=3
        )
    )
    opt = optimizer_for(model, lr=1e-4, weight_decay=0.01, head_lr=1e-2)
    head = {id(p) for p in model.classifier.parameters()}
    for group in opt.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1 and group["lr"] == (1e-2 if in_head.pop() else 1e-4)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert all(g["lr"] == 1e-4 for g in optimizer_for(model, 1e-4, 0.01).param_groups)


def test_each_data_file_is_parsed_once_for_the_check_and_the_method(toy_data, tmp_path, monkeypatch):
    from tunesmith.data import columns, readers

    monkeypatch.setattr(columns, "cache_dir", lambda: tmp_path / "cache")  # no table of another test's same rows
    parsed = []
    frames = readers._frames  # every parse, whole or in chunks, goes through it
    monkeypatch.setattr(readers, "_frames", lambda path, *a: parsed.append(path.name) or frames(path, *a))
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
    run(recipe, output_dir=tmp_path / "run")
    assert sorted(parsed) == ["test.csv", "train.csv", "validation.csv"]  # the data check read them; training reused
    assert readers._kept is None  # nothing is held after the run
    toy_data["paths"]["train"].write_text(toy_data["paths"]["train"].read_text() + "the movie is good 999,positive\n")
    run(recipe, output_dir=tmp_path / "again")
    assert parsed.count("train.csv") == 2  # a new run reads the file again
