"""Every shipped recipe validates, and runs end to end with the model swapped for a tiny one."""

from pathlib import Path

import pytest

import tunesmith
from tunesmith.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(ROOT.glob("recipes/**/*.yaml")) + [ROOT / "src/tunesmith/samples/quickstart.yaml"]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates_and_opens_with_its_command(path):
    recipe = load_recipe(path)
    assert recipe.model.name == "minilm-l6"
    assert path.read_text().startswith("# tunesmith "), "each recipe opens with the command that runs it"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_runs_with_a_tiny_model(path, tmp_path):
    recipe = load_recipe(path, ["model.name=tiny-bert", "train.epochs=1", "data.max_train_samples=200",
                                "data.min_examples_per_class=1",
                                "train.max_length=64", "eval.baseline=none"])
    missing = [p for p in (recipe.data.train, recipe.data.validation, recipe.data.test) if p and not Path(p).exists()]
    if missing:
        pytest.skip(f"shared benchmark data not present: {missing[0]}")
    metrics = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert 0.0 <= metrics["tuned"]["accuracy"] <= 1.0 and metrics["train"]["epochs"] == 1
    assert (tmp_path / "run" / "model" / "config.json").is_file()
