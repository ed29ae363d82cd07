"""Data that used to be accepted silently: regression targets too large to train on, a multi-label label present on
every row, and a label separator given on the command line as '|' (a YAML block-scalar sign)."""

import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesmith
from tests import test_multilabel, test_regression
from tunesmith.cli import app
from tunesmith.errors import TunesmithError
from tunesmith.recipe import load_recipe

runner = CliRunner()


def test_regression_targets_near_float_limits_are_refused_before_training(tmp_path):
    paths = test_regression.write_sets(tmp_path)
    frame = pd.read_csv(paths["train"])
    frame["label"] = frame["label"] * 1e300
    frame.to_csv(tmp_path / "huge.csv", index=False)
    with pytest.raises(TunesmithError, match="Rescale them"):
        tunesmith.run(test_regression.recipe({"train": str(tmp_path / "huge.csv")}), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("separator", ["|", ">", ";"])
def test_a_label_separator_from_the_command_line_is_the_character_given(separator):
    recipe = load_recipe({"model": "tiny-bert", "data": {"train": "x.csv"}}, [f"data.label_separator={separator}"])
    assert recipe.data.label_separator == separator and recipe.data.multi_label


def test_a_label_on_every_row_is_flagged(tmp_path):
    paths = test_multilabel.write_sets(tmp_path)
    frame = pd.read_csv(paths["train"], keep_default_na=False)
    frame["labels"] = frame["labels"].map(lambda s: f"{s}|common" if s else "common")
    frame.to_csv(tmp_path / "every.csv", index=False)
    done = runner.invoke(
        app,
        [
            "data",
            "check",
            str(tmp_path / "every.csv"),
            "--model",
            "tiny-bert",
            "--set",
            "data.label_column=labels",
            "--set",
            "data.label_separator=|",
        ],
    )
    assert done.exit_code == 0 and "['common'] are on every training row" in " ".join(done.output.split()), done.output
