"""Every shipped recipe validates, and runs end to end with the model swapped for a tiny one."""

import importlib.util
import os
from pathlib import Path

import pytest

import tunesmith
from tunesmith.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "src/tunesmith/recipes").glob("*.yaml")) + [ROOT / "src/tunesmith/samples/quickstart.yaml"]


SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def hub_mirror(tmp_path_factory):
    """The Hub datasets the recipes name, rebuilt offline from this repository's benchmark data in their Hub layout
    (scripts/hub_mirror.py), as `tunesmith data mirror` would have saved them."""
    if not SHARED.is_dir():
        return None
    spec = importlib.util.spec_from_file_location("hub_mirror", ROOT / "scripts" / "hub_mirror.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(tmp_path_factory.mktemp("hub-mirror"), SHARED)


@pytest.fixture(autouse=True)
def _data_root(monkeypatch, hub_mirror):
    """The recipes name their data relative to a data root (this repository's benchmark data, where present) or
    by Hub id (read from the mirror): two roots, the first that holds a path wins."""
    roots = [str(r) for r in (hub_mirror, SHARED) if r is not None]
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", os.pathsep.join(roots))


def _holders(recipe) -> list:
    return [recipe.data, *[s.data for s in recipe.stages or []], *[e.data for e in recipe.experiences or []]]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates_and_opens_with_its_command(path):
    recipe = load_recipe(path)
    assert recipe.model.name == ("smollm2-135m-instruct" if recipe.task == "generation" else "minilm-l6")
    assert path.read_text().startswith("# tunesmith "), "each recipe opens with the command that runs it"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_runs_with_a_tiny_model(path, tmp_path, hub_mirror):
    shipped = load_recipe(path)
    if hub_mirror is None and any(d is not None and d.hub for d in _holders(shipped)):
        pytest.skip("shared benchmark data not present: the Hub mirror is built from it")
    if shipped.stages:
        return _run_staged_tiny(shipped, tmp_path)
    if shipped.experiences:
        return _run_continual_tiny(shipped, tmp_path)
    generation = shipped.task == "generation"
    tiny = (
        [
            "model.name=tiny-llama",
            "data.max_train_samples=24",
            "data.max_eval_samples=8",
            "eval.max_samples=4",
            "eval.max_new_tokens=4",
            "train.max_length=1024",  # the tiny tokenizer writes ~3x the tokens SmolLM2 does: news articles fit
        ]
        if generation
        else [
            "model.name=tiny-bert",
            "data.max_train_samples=200",
            "data.min_examples_per_class=1",
            "eval.baseline=none",
            "train.max_length=64",
        ]
    )
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
    elif shipped.task == "token_classification":
        assert 0.0 <= metrics["tuned"]["f1"] <= 1.0 and metrics["entity_types"]
    elif shipped.data.multi_label:
        assert 0.0 <= metrics["tuned"]["f1_micro"] <= 1.0 and len(metrics["thresholds"]["per_label"]) == len(
            metrics["labels"]
        )
    elif shipped.task == "regression":
        assert -1.0 <= metrics["tuned"]["spearman"] <= 1.0 and metrics["tuned"]["mse"] >= 0
        assert (tmp_path / "run" / "model" / "config.json").is_file()
    else:
        assert 0.0 <= metrics["tuned"]["accuracy"] <= 1.0
        assert (tmp_path / "run" / "model" / "config.json").is_file()


def _run_staged_tiny(shipped, tmp_path):
    """Staged recipes: every stage shrunk (tiny model, 200 rows, a 2,000-token pre-training budget)."""
    raw = shipped.model_dump(mode="json")
    raw["model"]["name"] = "tiny-bert"
    raw["eval"]["baseline"] = "none"
    for stage in raw["stages"]:
        for data in (raw["data"], stage.get("data")):
            if data:
                data.update(max_train_samples=min(data.get("max_train_samples") or 200, 200), min_examples_per_class=1)
        if (stage.get("method") or {}).get("name") == "domain_adaptation":
            stage["method"].update(max_tokens=2000, heldout_max_blocks=8)
        stage["train"] = {**(stage.get("train") or {}), "epochs": 1, "max_length": 64}
    files = (
        [raw["data"]["train"]]
        + [s["data"]["train"] for s in raw["stages"] if s.get("data")]
        + [p for s in raw["stages"] for p in (s.get("method") or {}).get("corpus", [])]
    )
    if not all(Path(p).exists() for p in files if p is not None):  # None: a Hub id, read from the mirror
        pytest.skip("shared benchmark data not present")
    metrics = tunesmith.run(load_recipe(raw), output_dir=tmp_path / "run").metrics
    assert [s["name"] for s in metrics["stages"]] == [s.name for s in shipped.stages]
    assert 0.0 <= metrics["tuned"]["accuracy"] <= 1.0 and (tmp_path / "run" / "model" / "config.json").is_file()


def _run_continual_tiny(shipped, tmp_path):
    """Continual recipes: every experience shrunk to 60 rows on the tiny model."""
    raw = shipped.model_dump(mode="json")
    raw["model"]["name"] = "tiny-bert"
    raw["eval"]["baseline"] = "none"
    raw["train"].update(epochs=1, max_length=64)
    for exp in raw["experiences"]:
        exp["data"].update(max_train_samples=60, min_examples_per_class=1)
    if not all(Path(e["data"]["train"]).exists() for e in raw["experiences"]):
        pytest.skip("shared benchmark data not present")
    metrics = tunesmith.run(load_recipe(raw), output_dir=tmp_path / "run").metrics
    assert metrics["continual"]["experiences"] == [e.name for e in shipped.experiences]
    assert len(metrics["continual"]["matrix"]) == len(shipped.experiences)


def test_recipes_list_and_copy_write_a_recipe_that_trains_from_the_data_root(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tests.conftest import sentiment_rows
    from tunesmith.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["recipes", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "product_reviews" in listed.output and "support_assistant" in listed.output
    # on an 80-column terminal each description is its recipe's whole first sentence, never cut at an abbreviation
    narrow = runner.invoke(app, ["recipes", "list"], env={"COLUMNS": "80"}).output
    assert max(len(line) for line in narrow.splitlines()) <= 80
    flat = " ".join(narrow.split())
    assert "(MTS-Dialog, Ben Abacha et al. 2023, CC BY 4.0): the prompt names the section" in flat
    assert '(35 CUAD categories, e.g. "Exclusivity", "Minimum Commitment"). contract_clauses_few_shot' in flat
    done = runner.invoke(app, ["recipes", "copy", "product_reviews", str(tmp_path / "mine")])
    assert done.exit_code == 0, done.output
    copied = tmp_path / "mine" / "product_reviews.yaml"
    assert copied.read_text() == (ROOT / "src/tunesmith/recipes/product_reviews.yaml").read_text()
    again = runner.invoke(app, ["recipes", "copy", "product_reviews", str(tmp_path / "mine")])
    assert again.exit_code == 2 and "--overwrite" in again.output and copied.is_file()
    for bad in ("../../etc/passwd", "product_reviews.yaml/../x"):
        refused = runner.invoke(app, ["recipes", "copy", bad, str(tmp_path / "mine")])
        assert refused.exit_code == 2 and "No shipped recipe" in refused.output
    # its relative data paths resolve under the data root when they are not next to the recipe
    root = tmp_path / "data" / "customer_reviews_cr"
    root.mkdir(parents=True)
    for name, n, seed in (("train", 120, 0), ("validation", 30, 1), ("test", 30, 2)):
        sentiment_rows(n, seed).to_csv(root / f"{name}.csv", index=False)
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(tmp_path / "data"))
    recipe = load_recipe(copied, ["model.name=tiny-bert"])
    assert recipe.data.train == str(root / "train.csv") and recipe.data.test == str(root / "test.csv")
    (tmp_path / "mine" / "customer_reviews_cr").mkdir()
    sentiment_rows(50, 3).to_csv(tmp_path / "mine" / "customer_reviews_cr" / "train.csv", index=False)
    assert load_recipe(copied).data.train == str(tmp_path / "mine" / "customer_reviews_cr" / "train.csv")  # next to it
