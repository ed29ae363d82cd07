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
    assert recipe.model.name == ("smollm2-135m-instruct" if recipe.task == "generation" else "minilm-l6")
    assert path.read_text().startswith("# tunesmith "), "each recipe opens with the command that runs it"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_runs_with_a_tiny_model(path, tmp_path):
    shipped = load_recipe(path)
    generation = shipped.task == "generation"
    tiny = (["model.name=tiny-llama", "data.max_train_samples=24", "data.max_eval_samples=8", "eval.max_samples=4",
             "eval.max_new_tokens=4", "train.max_length=384"] if generation else
            ["model.name=tiny-bert", "data.max_train_samples=200", "data.min_examples_per_class=1", "eval.baseline=none", "train.max_length=64"])
    few_shot = ["method.pairs_per_example=2"] if shipped.method.name == "few_shot" else []
    recipe = load_recipe(path, [*tiny, *few_shot, "train.epochs=1"])
    missing = [p for p in (recipe.data.train, recipe.data.validation, recipe.data.test) if p and not Path(p).exists()]
    if missing:
        pytest.skip(f"shared benchmark data not present: {missing[0]}")
    metrics = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert metrics["train"]["epochs"] == 1
    if generation:
        assert metrics["tuned"]["loss"] > 0 and 0.0 <= metrics["tuned"]["rouge_l"] <= 1.0
        assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    else:
        assert 0.0 <= metrics["tuned"]["accuracy"] <= 1.0
        assert (tmp_path / "run" / "model" / "config.json").is_file()
