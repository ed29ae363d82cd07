"""task: regression, landed as a plug-in: a number per text (or text pair), MSE on a one-output head,
Pearson/Spearman base vs tuned, a saved model that speaks the labels' units."""

import json
import random

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app

runner = CliRunner()


def score_rows(n: int, seed: int, pairs: bool = False) -> pd.DataFrame:
    """A learnable score: how many of four words are "good" (0-4), amid filler; optionally a second text."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        k = rng.randint(0, 4)
        words = ["good"] * k + ["bad"] * (4 - k) + rng.sample(["the", "movie", "a", "is", "it"], 2)
        rng.shuffle(words)
        row = {
            "text": " ".join(words),
            "label": 10 + 2.5 * k + rng.random() * 0.3,
        }  # far from 0-1: the scale must come back
        if pairs:
            row["other"] = rng.choice(["the product", "a movie"])
        out.append(row)
    return pd.DataFrame(out)


def write_sets(folder, pairs: bool = False) -> dict:
    paths = {}
    for name, n, seed in (("train", 200, 0), ("validation", 40, 1), ("test", 40, 2)):
        paths[name] = str(folder / f"{name}.csv")
        score_rows(n, seed, pairs).to_csv(paths[name], index=False)
    return paths


def recipe(paths: dict, model: str = "tiny-bert", **data) -> dict:
    return {
        "task": "regression",
        "model": model,
        "data": {**paths, **data},
        "method": {"freeze_embeddings": False},
        "train": {"epochs": 4, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0},
    }


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    paths = write_sets(folder)
    return tunesmith.run(recipe(paths), output_dir=folder / "run"), paths, folder


def test_tuned_model_learns_the_score_and_reports_base_vs_tuned(regression_run):
    result, _, _ = regression_run
    m = result.metrics
    assert m["task"] == "regression" and m["method"] == "supervised" and m["eval_set"] == "test"
    assert m["tuned"]["spearman"] > 0.85 and m["tuned"]["pearson"] > 0.85
    assert set(m["base"]) >= {"mse", "mae", "pearson", "spearman", "kind"} and "ridge" in m["base"]["kind"]
    assert m["train"]["target_mean"] == pytest.approx(15, abs=1.0)  # trained on standardised targets
    report = (result.run_dir / "report.md").read_text()
    assert "spearman" in report and (result.run_dir / "plots" / "predicted_vs_true.png").is_file()


def test_the_saved_model_predicts_in_the_labels_units(regression_run):
    from transformers import AutoModelForSequenceClassification

    result, paths, _ = regression_run
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.evaluate(paths["test"])["spearman"] == pytest.approx(result.metrics["tuned"]["spearman"], abs=1e-6)
    high, low = predictor.predict(["good good good good the movie", "bad bad bad bad a it"])
    assert high > 15 > low  # 10 + 2.5k: the scale came back, not standardised units
    plain = AutoModelForSequenceClassification.from_pretrained(result.run_dir / "model")  # transformers alone
    assert plain.config.num_labels == 1


def test_bf16_scores_keep_their_digits(tmp_path):
    """Under bf16 autocast (the default on AMX CPUs and recent GPUs) a score near 16 in bf16 comes in steps of
    0.125: the head runs in fp32, so the saved model (head folded to the labels' units) ranks as the run did."""
    paths = write_sets(tmp_path)
    bf16 = recipe(paths)
    bf16["train"].update(precision="bf16", epochs=2)
    result = tunesmith.run(bf16, output_dir=tmp_path / "run")
    predictor = tunesmith.Predictor.load(result.run_dir, precision="bf16")
    scores = predictor.predict(pd.read_csv(paths["test"])["text"].tolist())
    on_bf16_grid = torch.as_tensor(scores).bfloat16().double().numpy() == scores
    assert on_bf16_grid.mean() < 0.5  # fp32 scores, not bf16's steps
    assert predictor.evaluate(paths["test"])["spearman"] == pytest.approx(result.metrics["tuned"]["spearman"], abs=1e-6)


def test_predict_and_eval_from_the_command_line(regression_run, tmp_path):
    result, paths, _ = regression_run
    out = tmp_path / "scored.csv"
    done = runner.invoke(app, ["predict", str(result.run_dir), paths["test"], "-o", str(out)])
    assert done.exit_code == 0, done.output
    scored = pd.read_csv(out)
    assert "predicted_score" in scored and scored["predicted_score"].between(5, 25).all()
    done = runner.invoke(app, ["eval", str(result.run_dir), "--data", paths["test"], "-o", str(tmp_path / "m.json")])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "m.json").read_text())["spearman"] > 0.85


def test_the_base_model_answers_with_the_runs_ridge_regression(regression_run, tmp_path):
    """base_head.json holds the base line's ridge as numbers: the base body with it scores the test file as the
    base line did, `eval --base` and `predict --base` answer with it, and a head of the wrong shape is refused."""
    import shutil

    from tunesmith.predict import load_base

    result, paths, _ = regression_run
    base = load_base(result.run_dir)
    assert base.evaluate(paths["test"])["spearman"] == pytest.approx(result.metrics["base"]["spearman"], abs=1e-4)
    assert base.predict(["good good good good the movie"]) != pytest.approx(
        tunesmith.Predictor.load(result.run_dir).predict(["good good good good the movie"])
    )
    out = tmp_path / "both.csv"
    done = runner.invoke(app, ["predict", str(result.run_dir), paths["test"], "-o", str(out), "--base"])
    assert done.exit_code == 0, done.output
    scored = pd.read_csv(out)
    written = pd.read_csv(out, dtype=str)  # six decimals as written, for both models (float32 printed 17 digits)
    for column in ("predicted_score", "base_predicted_score"):
        assert written[column].str.split(".").str[-1].str.len().max() <= 6, column
    assert scored["base_predicted_score"].round(4).tolist() == pytest.approx(
        base.predict(scored["text"].tolist()), abs=1e-3
    )
    done = runner.invoke(
        app, ["eval", str(result.run_dir), "--data", paths["test"], "--base", "-o", str(tmp_path / "m.json")]
    )
    assert done.exit_code == 0, done.output
    both = json.loads((tmp_path / "m.json").read_text())
    assert both["base"]["spearman"] == pytest.approx(result.metrics["base"]["spearman"], abs=1e-4)
    from fastapi.testclient import TestClient

    from tunesmith.ui import create_ui_app

    web = TestClient(create_ui_app(result.run_dir.parent), base_url="http://127.0.0.1")
    shown = web.post("/api/playground", json={"name": result.run_dir.name, "text": "good good bad bad the movie"})
    assert shown.status_code == 200 and "base_note" not in shown.json()
    assert shown.json()["base"]["value"] == pytest.approx(base.predict(["good good bad bad the movie"])[0], abs=1e-4)
    copy = tmp_path / "copy"
    shutil.copytree(result.run_dir, copy)
    head = json.loads((copy / "base_head.json").read_text())
    (copy / "base_head.json").write_text(json.dumps({**head, "coef": [head["coef"][0][:-1]]}))
    with pytest.raises(tunesmith.TunesmithError, match="not a head for this run's model"):
        load_base(copy)


def test_text_pairs_and_a_decoder_head_without_bias(tmp_path):
    paths = write_sets(tmp_path, pairs=True)
    decoder = recipe(paths, model="tiny-llama", text_pair_column="other")
    decoder["train"]["epochs"] = 8
    result = tunesmith.run(decoder, output_dir=tmp_path / "run")
    assert result.metrics["tuned"]["spearman"] > 0.5
    assert result.metrics["train"]["target_mean"] == 0.0  # no bias to hold the mean: scaled, not centred
    predictor = tunesmith.Predictor.load(result.run_dir)
    # the run scored its LoRA model unmerged, the saved one is merged: equal in fp32, ~1e-3 apart under bf16 autocast
    rel = 1e-2 if result.metrics["train"]["precision"] == "bf16" else 1e-4
    assert predictor.evaluate(paths["test"])["mse"] == pytest.approx(result.metrics["tuned"]["mse"], rel=rel)


def test_targets_that_are_not_numbers_are_refused_with_their_rows(tmp_path):
    paths = write_sets(tmp_path)
    frame = pd.read_csv(paths["train"]).astype({"label": object})
    frame.loc[[3, 7], "label"] = ["high", "n/a"]
    frame.to_csv(paths["train"], index=False)
    done = runner.invoke(app, ["data", "check", paths["train"], "--task", "regression", "--model", "tiny-bert"])
    assert done.exit_code == 1 and "not numbers" in done.output and "4, 8" in done.output
    (tmp_path / "r.yaml").write_text(json.dumps({**recipe(paths), "train": {"data_check": "off"}}))
    done = runner.invoke(app, ["train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")])
    assert done.exit_code == 2 and "needs a number" in " ".join(done.output.split())


def test_methods_that_do_not_do_regression_say_so(tmp_path):
    paths = write_sets(tmp_path)
    with pytest.raises(tunesmith.TunesmithError, match="does not do task 'regression'"):
        tunesmith.run(
            {**recipe(paths), "method": {"name": "few_shot"}, "train": {"data_check": "off"}}, output_dir=tmp_path / "r"
        )
    with pytest.raises(tunesmith.TunesmithError, match="regression runs pick the best epoch by their own"):
        tunesmith.load_recipe({**recipe(paths), "train": {"early_stopping": {"metric": "f1_macro"}}})
