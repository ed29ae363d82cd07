"""The CLI in-process: the happy path, and every bad input answered with a message and exit code 2."""

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_recipe(tmp_path, recipe, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_help_places_every_command_in_a_panel_in_the_order_a_new_user_meets_them():
    from tunesmith.cli.app import HELP_PANELS, command_name

    placed = [name for names in HELP_PANELS.values() for name in names]
    registered = [command_name(info) for info in (*app.registered_commands, *app.registered_groups)]
    assert sorted(registered) == sorted(placed)  # a new command must be given its panel
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "100"}).output
    at = [shown.index(f"─ {panel} ─") for panel in HELP_PANELS]
    assert at == sorted(at) and "─ Commands ─" not in shown
    # a panel's list gives each command's first paragraph with its lines joined, not broken where the docstring is
    wide = runner.invoke(app, ["--help"], env={"COLUMNS": "250"}).output
    assert "judge the best trial against the defaults over seeds on the test set" in wide


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.conftest import sentiment_rows

    tmp = tmp_path_factory.mktemp("cli")
    for name, n, seed in (("train", 160, 0), ("test", 40, 2)):
        sentiment_rows(n, seed).to_csv(tmp / f"{name}.csv", index=False)
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {"train": "train.csv", "test": "test.csv"},
        "method": {"freeze_embeddings": False},
        "train": {"epochs": 5, "lr": 3e-3, "batch_size": 16},
    }
    result = invoke("train", write_recipe(tmp, recipe), "-o", tmp / "run")
    assert result.exit_code == 0, result.output
    return {"dir": tmp, "run": tmp / "run", "output": result.output}


def test_train_writes_the_run_directory(finished_run):
    run = finished_run["run"]
    for name in (
        "recipe.yaml",
        "metrics.json",
        "train_log.jsonl",
        "report.md",
        "run.json",
        "model/config.json",
        "model/labels.json",
        "plots/loss.png",
        "plots/confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for section in ("base", "tuned"):
        assert set(metrics[section]) >= {"accuracy", "f1_macro", "precision_macro", "recall_macro"}
    assert set(metrics["train"]) >= {"runtime_s", "samples_per_s", "epochs", "best_epoch"}
    assert metrics["task"] == "classification" and metrics["method"] == "supervised" and metrics["model"] == "tiny-bert"
    assert "base" in finished_run["output"] and "tuned" in finished_run["output"]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_saved_model_loads_with_plain_transformers(finished_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(finished_run["run"] / "model")
    tok = AutoTokenizer.from_pretrained(finished_run["run"] / "model")
    logits = model(**tok(["it is good"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and set(model.config.label2id) == {"negative", "positive"}


def test_predictor_returns_label_names_and_probabilities(finished_run):
    from tunesmith import Predictor

    p = Predictor.load(finished_run["run"])
    assert p.classes_ == ["negative", "positive"]
    assert p.predict(["the movie is great", "it is terrible"]) == ["positive", "negative"]
    probs = p.predict_proba(["a good product"])
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-5


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".xlsx"])
def test_predict_keeps_input_format_and_adds_columns(finished_run, suffix):
    src = finished_run["dir"] / f"in{suffix}"
    frame = pd.DataFrame({"id": [1, 2], "text": ["the movie is great", "the product is terrible"]})
    write = {".csv": frame.to_csv, ".xlsx": frame.to_excel}.get(suffix)
    write(src, index=False) if write else frame.to_json(src, orient="records", lines=True)
    dst = finished_run["dir"] / f"out{suffix}"
    result = invoke("predict", finished_run["run"], src, "-o", dst)
    assert result.exit_code == 0, result.output
    read = {".csv": pd.read_csv, ".xlsx": pd.read_excel}.get(suffix, lambda p: pd.read_json(p, lines=True))
    out = read(dst)
    assert list(out.columns) == ["id", "text", "predicted_label", "probability"]
    assert out.predicted_label.tolist() == ["positive", "negative"]


def test_predict_reads_the_texts_of_a_file_with_one_column_whatever_its_name(finished_run):
    src, dst = finished_run["dir"] / "reviews.csv", finished_run["dir"] / "reviews_out.csv"
    pd.DataFrame({"review": ["the movie is great", "the product is terrible"]}).to_csv(src, index=False)
    result = invoke("predict", finished_run["run"], src, "-o", dst)
    assert result.exit_code == 0 and "reading texts from 'review'" in " ".join(result.output.split())
    assert pd.read_csv(dst).predicted_label.tolist() == ["positive", "negative"]


def test_eval_on_any_labeled_file(finished_run):
    out = finished_run["dir"] / "eval.json"
    result = invoke("eval", finished_run["run"], "--data", finished_run["dir"] / "test.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["accuracy"] >= 0.9


def test_recipe_validate_and_schema(tmp_path):
    path = write_recipe(tmp_path, {"model": {"name": "tiny-bert"}, "data": {"train": "t.csv"}})
    result = invoke("recipe", "validate", path, "--set", "train.lr=0.001")
    assert result.exit_code == 0 and "lr: 0.001" in result.output
    checked = invoke("recipe", "check", path, "--set", "train.lr=0.001")  # data check's twin name answers the same
    assert checked.exit_code == 0 and checked.output == result.output
    schema = invoke("recipe", "schema")
    assert schema.exit_code == 0 and json.loads(schema.output)["title"] == "Recipe"


def test_models_list_shows_aliases():
    result = invoke("models", "list")
    assert result.exit_code == 0 and "minilm-l6" in result.output and "tiny-bert" in result.output


# ------------------------------------------------------------------ bad input: message + exit 2


def _toy_recipe(tmp_path, **data):
    from tests.conftest import sentiment_rows

    sentiment_rows(40, 0).to_csv(tmp_path / "train.csv", index=False)
    return {"model": {"name": "tiny-bert"}, "data": {"train": "train.csv", **data}, "train": {"epochs": 1}}


BAD_DATA = {
    "missing file": (lambda d: _write(d, "x.csv", None), "file not found"),
    "empty file": (lambda d: _write(d, "x.csv", ""), "empty (0 bytes)"),
    "header only": (lambda d: _write(d, "x.csv", "text,label\n"), "no data rows"),
    "missing column": (lambda d: _write(d, "x.csv", "txt,label\na,positive\nb,negative\n"), "Did you mean 'txt'"),
    "empty cell": (lambda d: _write(d, "x.csv", "text,label\n,positive\nb,negative\n"), "empty or non-text"),
    "malformed jsonl": (lambda d: _write(d, "x.jsonl", '{"text": "a", "label": "positive"}\n{oops\n'), "x.jsonl:2"),
    "unseen label": (lambda d: _write(d, "x.csv", "text,label\na,positive\nb,neutral\n"), "'neutral' never appear"),
}


def _write(directory, name, content):
    if content is not None:
        (directory / name).write_text(content)
    return name


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_test_file_is_a_clear_error(tmp_path, case):
    make, expected = BAD_DATA[case]
    recipe = _toy_recipe(tmp_path, test=make(tmp_path))
    result = invoke("train", write_recipe(tmp_path, recipe), "-o", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_too_few_examples_per_class(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\n" + "a,x\n" * 10 + "b,y\n")
    recipe = {"model": {"name": "tiny-bert"}, "data": {"train": "t.csv"}}
    result = invoke("train", write_recipe(tmp_path, recipe))
    assert result.exit_code == 2 and "fewer than 2 training examples" in " ".join(result.output.split())


def test_unknown_recipe_key_and_bad_yaml(tmp_path):
    result = invoke(
        "train", write_recipe(tmp_path, {"model": {"name": "tiny-bert"}, "data": {"train": "t.csv"}, "trian": {}})
    )
    assert result.exit_code == 2 and "unknown key 'trian'" in result.output and "Did you mean 'train'" in result.output
    (tmp_path / "bad.yaml").write_text("model: [\n")
    result = invoke("recipe", "validate", tmp_path / "bad.yaml")
    assert result.exit_code == 2 and "line" in result.output


def test_missing_model_and_unknown_model(tmp_path, monkeypatch):
    import tunesmith.models.loading as models

    monkeypatch.setattr(models, "package_file", lambda source: None)
    recipe = _toy_recipe(tmp_path)
    recipe["model"]["name"] = "minilm-l6"
    result = invoke("train", write_recipe(tmp_path, recipe))
    assert result.exit_code == 2 and "tunesmith models pull minilm-l6" in " ".join(result.output.split())
    recipe["model"]["name"] = "minilm-l7"
    result = invoke("train", write_recipe(tmp_path, recipe))
    assert result.exit_code == 2 and "Did you mean 'minilm-l6'" in " ".join(result.output.split())


def test_existing_run_directory_is_not_overwritten(finished_run, tmp_path):
    recipe = _toy_recipe(tmp_path)
    result = invoke("train", write_recipe(tmp_path, recipe), "-o", finished_run["run"])
    assert result.exit_code == 2 and "already holds a run" in " ".join(result.output.split())


def test_predict_on_unfinished_or_foreign_directory(tmp_path):
    result = invoke("predict", tmp_path, tmp_path / "in.csv", "-o", tmp_path / "out.csv")
    assert result.exit_code == 2 and "not a tunesmith run directory" in " ".join(result.output.split())
    (tmp_path / "run.json").write_text('{"status": "running"}')
    result = invoke("predict", tmp_path, tmp_path / "in.csv", "-o", tmp_path / "out.csv")
    assert result.exit_code == 2 and "has not finished" in " ".join(result.output.split())


def test_version_and_env_print_what_a_bug_report_needs():
    from importlib import metadata

    done = runner.invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"tunesmith {metadata.version('tunesmith')}"
    done = runner.invoke(app, ["env"])
    assert done.exit_code == 0
    for key in ("torch", "transformers", "cpu flags", "precision auto"):
        assert key in done.output
    assert done.output.split("precision auto", 1)[1].split()[0] in ("fp32", "bf16", "fp16")


def test_an_error_message_with_brackets_is_printed_as_written(tmp_path):
    """Error text is not rich markup: a label such as [urgent] or an extra such as tunesmith[serve] stays whole."""
    from typer.testing import CliRunner

    from tunesmith.cli import app

    missing = tmp_path / "[urgent] runs"
    shown = CliRunner().invoke(app, ["runs", "list", str(missing)])
    assert shown.exit_code == 2 and "[urgent] runs is not a folder" in " ".join(shown.output.split())


def test_eval_base_scores_the_starting_model_on_the_same_file(finished_run):
    out = finished_run["dir"] / "eval_base.json"
    result = invoke("eval", finished_run["run"], "--data", finished_run["dir"] / "test.csv", "--base", "-o", out)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    trained = json.loads((finished_run["run"] / "metrics.json").read_text())
    assert set(scored) == {"base", "tuned"} and "base" in result.output and "tuned" in result.output
    for side in ("base", "tuned"):  # the run scored both on this very file: the same numbers come back
        assert scored[side]["f1_macro"] == pytest.approx(trained[side]["f1_macro"], abs=1e-6), side


def test_eval_base_is_refused_for_a_run_without_a_base_line(finished_run, tmp_path):
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {"train": str(finished_run["dir"] / "train.csv")},
        "train": {"epochs": 1},
        "eval": {"baseline": "none"},
    }
    assert invoke("train", write_recipe(tmp_path, recipe), "-o", tmp_path / "run").exit_code == 0
    result = invoke("eval", tmp_path / "run", "--data", finished_run["dir"] / "test.csv", "--base")
    assert result.exit_code == 2 and "kept no base line" in " ".join(result.output.split())
    out = tmp_path / "p.csv"
    result = invoke("predict", tmp_path / "run", finished_run["dir"] / "test.csv", "-o", out, "--base")
    assert result.exit_code == 2 and "kept no base line" in " ".join(result.output.split()) and not out.exists()


def test_predict_base_adds_the_base_lines_answers_beside(finished_run):
    from tunesmith.predict import load_base

    out = finished_run["dir"] / "both.csv"
    result = invoke("predict", finished_run["run"], finished_run["dir"] / "test.csv", "-o", out, "--base")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert {"predicted_label", "base_predicted_label", "base_probability"} <= set(rows.columns)
    assert rows.base_predicted_label.tolist() == load_base(finished_run["run"]).predict(rows.text.tolist())


@pytest.mark.parametrize(
    "damage",
    [
        {"coef": [[0.5, 0.5]]},  # rows of the wrong width
        {"intercept": [0.0, 0.0, 0.0, 0.0, 0.0]},  # more biases than rows
        {"labels": [{"x": 1}, "b"]},  # labels that are not names
        {"coef": "nan"},  # not numbers
        {"labels": ["positive"], "coef": [[0.0] * 32], "intercept": [0.0]},  # one class: nothing to choose from
    ],
)
def test_a_damaged_base_head_is_refused_with_the_file_named(finished_run, tmp_path, damage):
    """base_head.json comes with a run folder from anyone: a head that does not fit the model is an error naming
    the file, never a broadcast over every class or a numpy error on the first request."""
    import shutil

    from tunesmith.errors import TunesmithError
    from tunesmith.predict import load_base

    copy = tmp_path / "copy"
    shutil.copytree(finished_run["run"], copy)
    head = json.loads((copy / "base_head.json").read_text())
    (copy / "base_head.json").write_text(json.dumps({**head, **damage}))
    with pytest.raises(TunesmithError, match=r"base_head.json is not a head for this run's model"):
        load_base(copy)


def test_a_hub_model_that_cannot_be_fetched_is_answered_with_the_offline_ways(capsys):
    import typer

    from tunesmith.cli.app import friendly

    @friendly
    def load(error):
        raise error

    with pytest.raises(typer.Exit) as stopped:  # transformers' words when the Hub cannot be reached
        load(OSError("We couldn't connect to 'https://huggingface.co' to load the files"))
    shown = " ".join(capsys.readouterr().err.split())
    assert stopped.value.exit_code == 2 and "couldn't connect" in shown and "--local-dir DIR" in shown
    assert "HF_HUB_OFFLINE=1" in shown and "disk space" not in shown
    with pytest.raises(typer.Exit):  # a full disk is still the system's words with its own advice
        load(OSError(28, "No space left on device", "/runs/x/model.safetensors"))
    shown = " ".join(capsys.readouterr().err.split())
    assert "No space left on device" in shown and "disk space" in shown and "HF_HUB_OFFLINE" not in shown
