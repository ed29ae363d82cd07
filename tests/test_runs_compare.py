"""`tunesmith runs compare` and `runs list`: recipe differences only, base and tuned side by side."""

import json

import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.pipeline import run
from tunesmith.runs.compare import compare, flatten

runner = CliRunner()


def _two_runs(toy_data, tmp_path):
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
    first = run(recipe, output_dir=tmp_path / "runs" / "lr3e-3").metrics
    recipe["train"]["lr"] = 1e-3
    second = run(recipe, output_dir=tmp_path / "runs" / "lr1e-3").metrics
    return tmp_path / "runs", first, second


def test_compare_shows_only_the_keys_that_differ_and_each_runs_metrics(toy_data, tmp_path):
    folder, first, second = _two_runs(toy_data, tmp_path)
    table = compare([folder / "lr3e-3", folder / "lr1e-3"])
    assert table["recipe"] == {"train.lr": ["0.003", "0.001"]}
    assert table["metrics"]["accuracy (tuned)"] == [
        f"{first['tuned']['accuracy']:.4f}",
        f"{second['tuned']['accuracy']:.4f}",
    ]
    assert table["metrics"]["accuracy (base)"][0] == f"{first['base']['accuracy']:.4f}"
    assert table["status"] == ["finished", "finished"]
    printed = runner.invoke(app, ["runs", "compare", str(folder / "lr3e-3"), str(folder / "lr1e-3"), "--json"])
    assert printed.exit_code == 0 and json.loads(printed.output) == table
    shown = runner.invoke(app, ["runs", "compare", str(folder / "lr3e-3"), str(folder / "lr1e-3")])
    assert shown.exit_code == 0 and "train.lr" in shown.output and "train.epochs" not in shown.output
    listed = runner.invoke(app, ["runs", "list", str(folder)])
    base, tuned = first["base"]["f1_macro"], first["tuned"]["f1_macro"]
    assert listed.exit_code == 0 and f"{base:.4f} -> {tuned:.4f}" in " ".join(listed.output.split())
    assert listed.output.rstrip().endswith("┘")  # finished runs: no note lines under the table


def test_compare_refuses_one_run_and_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "plain").mkdir()
    one = runner.invoke(app, ["runs", "compare", str(tmp_path / "plain")])
    assert one.exit_code == 2 and "two or more" in one.output
    two = runner.invoke(app, ["runs", "compare", str(tmp_path / "plain"), str(tmp_path / "plain")])
    assert two.exit_code == 2 and "not a tunesmith run directory" in " ".join(two.output.split())


def test_flatten_names_nested_keys_with_dots_and_writes_yaml_words():
    saved = yaml.safe_load("train: {lr: 0.001, early_stopping: {patience: 2}}\ndata: {test: null}\neval: {x: true}")
    assert flatten(saved) == {
        "train.lr": "0.001",
        "train.early_stopping.patience": "2",
        "data.test": "null",
        "eval.x": "true",
    }


def test_text_from_a_run_folder_is_shown_as_written_not_read_as_markup(toy_data, tmp_path):
    folder, _, _ = _two_runs(toy_data, tmp_path)
    saved = folder / "lr1e-3" / "recipe.yaml"
    recipe = yaml.safe_load(saved.read_text())
    recipe["model"] = {"name": "[/]evil[bold]"}  # a stray closing tag stopped rich with a MarkupError
    saved.write_text(yaml.safe_dump(recipe))
    (folder / "lr1e-3").rename(folder / "[bold]lr")
    listed = runner.invoke(app, ["runs", "list", str(folder)])
    assert listed.exit_code == 0 and "[bold]lr" in listed.output and "[/]evil" in listed.output
    shown = runner.invoke(app, ["runs", "compare", str(folder / "lr3e-3"), str(folder / "[bold]lr")])
    assert shown.exit_code == 0 and "[/]evil[bold]" in shown.output and "[bold]lr" in shown.output
