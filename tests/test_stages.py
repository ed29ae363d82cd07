"""Staged recipes: weights carry over, heads are replaced between label sets, per-stage table, control, resume."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_classifier, load_encoder, model_spec, resolve_weights

from .conftest import sentiment_rows

runner = CliRunner()


@pytest.fixture
def staged(toy_data):
    """Source task (positive/negative) -> target task (up/down, same two-class shape) on tiny-bert."""
    tmp = toy_data["dir"]
    target = sentiment_rows(80, 5).replace({"label": {"positive": "up", "negative": "down"}})
    target.iloc[:60].to_csv(tmp / "target_train.csv", index=False)
    target.iloc[60:].to_csv(tmp / "target_val.csv", index=False)
    (tmp / "corpus.txt").write_text("\n\n".join(f"the product is good {i}" for i in range(30)), encoding="utf-8")
    recipe = {
        **toy_data["recipe"],
        "data": {"train": str(tmp / "target_train.csv"), "validation": str(tmp / "target_val.csv")},
        "stages": [
            {
                "name": "dapt",
                "method": {"name": "domain_adaptation", "corpus": [str(tmp / "corpus.txt")], "task_texts": True},
                "train": {"epochs": 1, "max_length": 32},
            },
            {"name": "source", "data": {k: str(v) for k, v in toy_data["paths"].items()}},
            {"name": "target"},
        ],
    }
    return recipe, tmp


def _body(path):
    return {k: v.clone() for k, v in load_encoder(str(path)).state_dict().items()}


def test_stages_chain_weights_and_report_each_stage(staged):
    recipe, tmp = staged
    result = tunesmith.run(recipe, output_dir=tmp / "run", compare_direct=True)
    m, run_dir = result.metrics, result.run_dir
    assert [s["name"] for s in m["stages"]] == ["dapt", "source", "target"]
    assert (
        m["stages"][0]["own"]["tuned"]["perplexity"] > 0 and "f1_macro" in m["stages"][0]["target"]
    )  # probe on target
    assert m["tuned"] == json.loads((run_dir / "stages/3-target/metrics.json").read_text())["tuned"]
    assert m["stages"][-1]["target"]["f1_macro"] == m["tuned"]["f1_macro"]
    assert set(m["direct"]) == set(m["tuned"])  # the control has the same keys
    assert m["model"] == "tiny-bert" and m["labels"] == ["down", "up"]
    report = (run_dir / "report.md").read_text()
    assert "| dapt | domain_adaptation |" in report and "control" in report
    # the final model sits at the top of the run: predict uses it
    assert tunesmith.Predictor.load(run_dir).predict(["good"])[0] in ("up", "down")
    from tunesmith.cli.runs import _method  # what `runs list` shows as the method: the stages', in order

    assert (
        _method(yaml.safe_load((run_dir / "recipe.yaml").read_text()))
        == "domain_adaptation -> supervised -> supervised"
    )
    # the source stage started from the DAPT body: its end body differs from base, and stage 3's from stage 2's
    base, dapt = _body(resolve_weights("tiny-bert")), _body(run_dir / "stages/1-dapt/model")
    assert any(not torch.equal(base[k], dapt[k]) for k in base)
    # a stage's model keeps its registry model's defaults (kind, LoRA targets, learning rate)
    assert model_spec(str(run_dir / "stages/1-dapt/model"))["alias"] == "tiny-bert"
    # the base model answers with the probe the staged run scored it by (eval/predict --base, the playground)
    from tunesmith.predict import load_base

    scored = load_base(run_dir).evaluate(recipe["data"]["validation"])
    assert scored["f1_macro"] == pytest.approx(m["base"]["f1_macro"], abs=1e-4)


def test_next_stage_starts_exactly_where_the_previous_ended(staged):
    recipe, tmp = staged
    recipe["stages"] = recipe["stages"][1:]
    recipe["stages"][1]["train"] = {"lr": 1e-12}  # the target stage barely moves: its body must equal the source's
    run_dir = tunesmith.run(recipe, output_dir=tmp / "run").run_dir
    source, target = _body(run_dir / "stages/1-source/model"), _body(run_dir / "stages/2-target/model")
    base = _body(resolve_weights("tiny-bert"))
    assert all(torch.allclose(source[k], target[k], atol=1e-6) for k in source)
    assert any(not torch.allclose(base[k], source[k], atol=1e-4) for k in base)


def test_head_is_replaced_for_new_labels_and_kept_for_the_same(staged, tmp_path):
    recipe, tmp = staged
    recipe = {**recipe, "stages": recipe["stages"][1:2]}
    run_dir = tunesmith.run(recipe, output_dir=tmp / "run").run_dir
    saved = run_dir / "stages/1-source/model"
    trained = load_classifier(str(saved), ["negative", "positive"])
    relabeled = load_classifier(str(saved), ["down", "up"])  # same shape, other labels: a fresh head
    assert torch.equal(
        trained.classifier.weight, load_classifier(str(saved), ["negative", "positive"]).classifier.weight
    )
    assert not torch.allclose(trained.classifier.weight, relabeled.classifier.weight)
    assert torch.equal(
        trained.bert.encoder.layer[0].attention.self.query.weight,
        relabeled.bert.encoder.layer[0].attention.self.query.weight,
    )
    assert relabeled.config.id2label == {0: "down", 1: "up"}


def test_resume_skips_finished_stages_and_refuses_another_recipe(staged):
    recipe, tmp = staged
    recipe = {**recipe, "stages": recipe["stages"][1:]}
    run_dir = tunesmith.run(recipe, output_dir=tmp / "run").run_dir
    first_log = (run_dir / "stages/1-source/train_log.jsonl").read_text()
    status = run_dir / "stages/2-target/run.json"
    status.write_text(json.dumps({"status": "running"}))  # as if killed during stage 2
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    recipe_path = tmp / "staged.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["train", str(recipe_path), "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "finished earlier, kept" in result.output
    assert (run_dir / "stages/1-source/train_log.jsonl").read_text() == first_log  # stage 1 not re-run
    assert json.loads(status.read_text())["status"] == "finished"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    again = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert again.exit_code == 2 and "already finished" in again.output
    (run_dir / "run.json").write_text(json.dumps({"status": "failed"}))
    changed = runner.invoke(app, ["train", str(recipe_path), "--resume", str(run_dir), "--set", "train.lr=0.01"])
    assert changed.exit_code == 2 and "differs" in changed.output


def test_stage_recipe_errors_are_clear(toy_data):
    bad = {**toy_data["recipe"], "stages": [{"name": "a", "train": {"learning_rate": 1e-3}}]}
    with pytest.raises(TunesmithError, match="stages.train.learning_rate.*'lr'"):
        tunesmith.load_recipe(bad)
    no_data = {"model": {"name": "tiny-bert"}, "stages": [{"name": "a"}]}
    with pytest.raises(TunesmithError, match=r"stage\(s\) \['a'\] have no data"):
        tunesmith.load_recipe(no_data)
    result = runner.invoke(app, ["train", "--help"])
    assert "--compare-direct" in result.output and "--resume" in result.output


def test_decoder_pretraining_stage_feeds_a_chat_stage(tmp_path):
    rows = [{"prompt": f"where is my order {i}", "response": "track_order"} for i in range(24)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("\n\n".join(["the customer asked where the order is"] * 20), encoding="utf-8")
    recipe = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": {"train": str(tmp_path / "chat.jsonl")},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 64},
        "eval": {"max_samples": 2, "max_new_tokens": 4},
        "stages": [
            {"name": "cpt", "method": {"name": "domain_adaptation", "corpus": [str(tmp_path / "notes.txt")]}},
            {"name": "sft"},
        ],
    }
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert (
        m["stages"][0]["method"] == "domain_adaptation" and "loss" in m["stages"][0]["target"]
    )  # answer loss on target
    assert (tmp_path / "run/stages/1-cpt/model/config.json").is_file() and (tmp_path / "run/adapter").is_dir()


@pytest.mark.parametrize("kind", ["multi_label", "token_classification"])
def test_stages_toward_new_task_kinds_score_each_stage_with_the_tasks_own_probe(kind, tmp_path):
    """A DAPT stage before a multi-label or entity target: the intermediate model is scored with that task's own
    probe (one-vs-rest / per-word), as the base model is, and TAPT takes the target's texts."""
    from tests import test_multilabel, test_token_classification

    if kind == "multi_label":
        target = test_multilabel.recipe(test_multilabel.write_sets(tmp_path), label_separator="|")
        figure = "f1_micro"
    else:
        target = test_token_classification.recipe(test_token_classification.write_sets(tmp_path))
        figure = "f1"
    (tmp_path / "corpus.txt").write_text("\n\n".join(f"the product is good {i}" for i in range(30)), encoding="utf-8")
    target["train"] = {**target["train"], "epochs": 2, "early_stopping": {"patience": None}}
    recipe = {
        **target,
        "stages": [
            {
                "name": "dapt",
                "method": {"name": "domain_adaptation", "corpus": [str(tmp_path / "corpus.txt")], "task_texts": True},
                "train": {"epochs": 1, "max_length": 32},
            },
            {"name": "target"},
        ],
    }
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert 0.0 <= m["base"][figure] <= 1.0 and 0.0 <= m["stages"][0]["target"][figure] <= 1.0
    assert m["stages"][0]["target_kind"] in ("one-vs-rest probe", "per-word probe")
    assert m["stages"][-1]["target"][figure] == m["tuned"][figure]


@pytest.mark.parametrize(
    "first, second",
    [
        ("multi_label", "regression"),
        ("classification", "regression"),
        ("multi_label", "classification"),
        ("regression", "classification"),
    ],
)
def test_stages_may_change_the_task_kind(first, second, tmp_path):
    """Each stage gets the head its own task needs (shape and loss), whatever the previous stage trained."""
    from tests import test_multilabel, test_regression

    (tmp_path / "ml").mkdir()
    (tmp_path / "rg").mkdir()
    sentiment_rows(60, 0).to_csv(tmp_path / "cls.csv", index=False)
    data = {
        "multi_label": {
            **test_multilabel.write_sets(tmp_path / "ml"),
            "label_column": "labels",
            "label_separator": "|",
        },
        "regression": test_regression.write_sets(tmp_path / "rg"),
        "classification": {"train": str(tmp_path / "cls.csv")},
    }
    task = {"multi_label": "classification", "regression": "regression", "classification": "classification"}
    recipe = {
        "model": "tiny-bert",
        "train": {"epochs": 1},
        "eval": {"baseline": "none"},
        "stages": [
            {"name": "a", "task": task[first], "data": data[first]},
            {"name": "b", "task": task[second], "data": data[second]},
        ],
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    answer = tunesmith.Predictor.load(run_dir).predict(["the movie is good", "bad product"])
    if second == "regression":
        assert len(answer) == 2 and all(isinstance(float(v), float) for v in answer)
    else:
        assert set(answer) <= {"positive", "negative"}


def test_a_staged_runs_served_model_takes_its_last_stages_system_prompt(tmp_path):
    from tunesmith.tasks.generation.formatting import render

    rows = [{"prompt": f"where is my order {i}", "response": "track_order"} for i in range(24)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("\n\n".join(["the customer asked where the order is"] * 20), encoding="utf-8")
    chat = {"train": str(tmp_path / "chat.jsonl"), "system_prompt": "Name the intent."}
    recipe = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "train": {"epochs": 1, "batch_size": 8, "max_length": 64},
        "eval": {"max_samples": 2, "max_new_tokens": 4},
        "stages": [
            {"name": "cpt", "method": {"name": "domain_adaptation", "corpus": [str(tmp_path / "notes.txt")]}},
            {"name": "sft", "data": chat},  # only the last stage has the chat data and its system prompt
        ],
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    predictor = tunesmith.Predictor.load(run_dir)
    assert "Name the intent." in render(predictor.tokenizer, [{"role": "user", "content": "hi"}])
