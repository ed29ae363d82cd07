"""Continual learning: reservoir, EWC, metrics arithmetic, head growth, runs, update/versions/rollback."""

import json
import random
from collections import Counter

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app
from tunesmith.methods.continual_strategies import Reservoir, continual_metrics, ewc_penalty, grow_head
from tunesmith.models.loading import load_classifier, resolve_weights

runner = CliRunner()


def test_reservoir_is_bounded_class_balanced_and_uniform():
    counts = Counter()
    for trial in range(300):
        buffer = Reservoir(size=10, seed=trial)
        for i in range(100):
            buffer.add(i, "a")
        for i in range(100, 130):
            buffer.add(i, "b")
        assert len(buffer) == 10 and len(buffer.items["a"]) == 5 and len(buffer.items["b"]) == 5
        counts.update(buffer.items["a"])
    # each of class a's 100 examples is kept with probability 5/100: 300 trials -> ~15 times each
    assert min(counts[i] for i in range(100)) >= 3 and max(counts.values()) <= 35
    first_half = sum(counts[i] for i in range(50))
    assert 0.4 < first_half / sum(counts[i] for i in range(100)) < 0.6  # early and late examples alike


def test_reservoir_sample_is_bounded_and_seeded():
    buffer = Reservoir(size=6, seed=0)
    for i in range(20):
        buffer.add(f"t{i}", "x" if i % 2 else "y")
    assert len(buffer.sample(100)) == 6
    assert Reservoir(6, 1, buffer.items, buffer.seen).sample(3) == Reservoir(6, 1, buffer.items, buffer.seen).sample(3)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away():
    model = torch.nn.Linear(3, 2)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    assert ewc_penalty(model, fisher, anchor, 10.0).item() == 0.0
    with torch.no_grad():
        model.weight += 0.1
    small = ewc_penalty(model, fisher, anchor, 10.0).item()
    with torch.no_grad():
        model.weight += 0.1
    assert 0 < small < ewc_penalty(model, fisher, anchor, 10.0).item()
    assert small == pytest.approx(10.0 / 2 * 6 * 0.01, rel=1e-4)


def test_metrics_arithmetic_on_a_hand_made_matrix():
    matrix = [[0.9, 0.5, 0.4], [0.7, 0.8, 0.5], [0.6, 0.7, 0.9]]
    m = continual_metrics(matrix, initial=[0.5, 0.5, 0.3])
    assert m["average_accuracy"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert m["bwt"] == pytest.approx(((0.6 - 0.9) + (0.7 - 0.8)) / 2)
    assert m["fwt"] == pytest.approx(((0.5 - 0.5) + (0.5 - 0.3)) / 2)


def test_head_growth_keeps_old_logits():
    model = load_classifier(resolve_weights("tiny-bert"), ["a", "b"]).eval()
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    before = model(**batch).logits
    grow_head(model, ["a", "b", "c", "d"])
    after = model(**batch).logits
    assert after.shape == (1, 4) and torch.allclose(after[:, :2], before, atol=1e-6)  # same up to float rounding
    assert model.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"} and model.num_labels == 4


def _stream(tmp_path, seed=0):
    """Two experiences whose cue words mean opposite things (movies: good = positive; products: good =
    negative): learning the second overwrites the first unless the model keeps it."""
    rng = random.Random(seed)
    files = {}
    for name, (topic, pos, neg) in {"first": ("movie", "good", "bad"), "second": ("product", "bad", "good")}.items():
        for split, n in (("train", 80), ("validation", 24)):
            rows = []
            for i in range(n):
                label = "positive" if i % 2 == 0 else "negative"
                filler = rng.sample(["the", "a", "is", "it"], 2)
                rows.append(
                    {
                        "text": " ".join(filler + [topic, pos if label == "positive" else neg]) + f" {i}",
                        "label": label,
                        "domain": name,
                    }
                )
            files[(name, split)] = tmp_path / f"{name}_{split}.csv"
            pd.DataFrame(rows).to_csv(files[(name, split)], index=False)
    return files


def _recipe(files, strategy, **method):
    return {
        "model": {"name": "tiny-bert"},
        "eval": {"baseline": "none"},
        "method": {"name": "continual", "strategy": strategy, "freeze_embeddings": False, "freeze_layers": 0, **method},
        "train": {"epochs": 8, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0, "early_stopping": {"patience": None}},
        "experiences": [
            {"name": n, "data": {"train": str(files[(n, "train")]), "validation": str(files[(n, "validation")])}}
            for n in ("first", "second")
        ],
    }


def test_replay_forgets_less_than_naive_and_writes_the_matrix(tmp_path):
    files = _stream(tmp_path)
    probed = {"eval": {"baseline": "linear_probe"}}
    naive_run = tunesmith.run({**_recipe(files, "naive"), **probed}, output_dir=tmp_path / "naive").metrics
    replay_run = tunesmith.run(
        {**_recipe(files, "replay", replay_ratio=1.0), **probed}, output_dir=tmp_path / "replay"
    ).metrics
    naive, replay = naive_run["continual"], replay_run["continual"]
    # base vs tuned: the base model's probe on every experience's data, the same whatever the strategy trained
    assert naive_run["base"] == replay_run["base"] and 0.0 < naive_run["base"]["accuracy"] <= 1.0
    assert set(naive_run["tuned"]) <= set(naive_run["base"])  # the same measures, and the probe named
    assert len(naive["matrix"]) == 2 and len(naive["matrix"][0]) == 2
    assert naive["matrix"][0][0] > 0.8  # it learned the first experience
    assert replay["bwt"] > naive["bwt"]  # and replay forgot less of it
    assert (tmp_path / "replay" / "plots" / "accuracy_matrix.png").is_file()
    report = (tmp_path / "replay" / "report.md").read_text()
    assert "backward transfer" in report and "| first |" in report
    assert f"{replay_run['base']['accuracy']:.4f}" in report  # the report shows base beside tuned


def test_ewc_and_lwf_runs_store_their_state(tmp_path):
    files = _stream(tmp_path)
    result = tunesmith.run(_recipe(files, ["replay", "ewc", "lwf"], ewc_samples=16), output_dir=tmp_path / "run")
    assert result.metrics["continual"]["strategy"] == ["replay", "ewc", "lwf"]
    assert (result.run_dir / "versions" / "v2" / "ewc.safetensors").is_file()
    from safetensors.torch import load_file

    ewc = load_file(result.run_dir / "versions" / "v2" / "ewc.safetensors")  # no pickle in a run directory
    fisher = {k: v for k, v in ewc.items() if k.startswith("fisher.")}
    assert fisher and all(f.min() >= 0 for f in fisher.values())
    assert {k.replace("fisher.", "anchor.", 1) for k in fisher} <= set(ewc)


def test_class_incremental_labels_grow(tmp_path):
    files = _stream(tmp_path)
    for name in ("first", "second"):
        for split in ("train", "validation"):
            frame = pd.read_csv(files[(name, split)])
            frame["label"] = frame["label"].map({"positive": f"{name}_pos", "negative": f"{name}_neg"})
            frame.to_csv(files[(name, split)], index=False)
    metrics = tunesmith.run(_recipe(files, "replay"), output_dir=tmp_path / "run").metrics
    assert metrics["labels"] == ["first_neg", "first_pos", "second_neg", "second_pos"]
    assert metrics["continual"]["matrix"][0][1] == 0.0  # before its classes exist, experience 2 scores 0


def test_update_versions_rollback_and_max_forgetting(tmp_path):
    files = _stream(tmp_path)
    recipe = _recipe(files, "replay")
    recipe["experiences"] = recipe["experiences"][:1]
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    new = str(files[("second", "train")])
    refused = runner.invoke(app, ["update", str(run_dir), "--data", new, "--max-forgetting", "-1"])
    assert refused.exit_code == 2 and "update refused" in refused.output
    assert not (run_dir / "versions" / "v2").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    done = runner.invoke(
        app, ["update", str(run_dir), "--data", new, "--validation", str(files[("second", "validation")])]
    )
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["runs", "versions", str(run_dir)])
    assert "v2 (current)" in listed.output and "second_train" in listed.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["continual"]["version"] == 2 and len(metrics["continual"]["matrix"]) == 2
    back = runner.invoke(app, ["runs", "versions", str(run_dir), "--rollback", "1"])
    assert back.exit_code == 0 and "v1 (current)" in back.output
    v1 = load_classifier(str(run_dir / "versions" / "v1" / "model"), ["negative", "positive"])
    top = load_classifier(str(run_dir / "model"), ["negative", "positive"])
    assert all(torch.equal(a, b) for a, b in zip(v1.state_dict().values(), top.state_dict().values()))
    assert runner.invoke(app, ["runs", "versions", str(run_dir), "--rollback", "7"]).exit_code == 2


def test_continual_recipe_errors(tmp_path):
    with pytest.raises(tunesmith.TunesmithError, match="experiences: needs method.name: continual"):
        tunesmith.load_recipe(
            {"model": {"name": "tiny-bert"}, "experiences": [{"name": "a", "data": {"train": "x.csv"}}]}
        )
    with pytest.raises(tunesmith.TunesmithError, match="strategy"):
        tunesmith.load_recipe(
            {
                "model": {"name": "tiny-bert"},
                "data": {"train": "x.csv"},
                "method": {"name": "continual", "strategy": "replay+magic"},
            }
        )
