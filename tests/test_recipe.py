import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.recipe import Recipe, json_schema, load_recipe

BASE = {"model": {"name": "tiny-bert"}, "data": {"train": "train.csv"}}


def test_defaults_fill_in_and_paths_resolve_against_recipe_folder(tmp_path):
    path = tmp_path / "sub" / "r.yaml"
    path.parent.mkdir()
    path.write_text("model: {name: tiny-bert}\ndata: {train: ../data/train.csv}\n")
    recipe = load_recipe(path)
    assert recipe.data.train == str((tmp_path / "data" / "train.csv").resolve())
    assert recipe.method.name == "supervised" and recipe.train.batch_size == 32 and recipe.version == 1


def test_unknown_key_suggests_closest():
    with pytest.raises(TunesmithError) as err:
        load_recipe({**BASE, "train": {"lrr": 1e-4}})
    assert "unknown key 'train.lrr'" in str(err.value) and "Did you mean 'lr'" in str(err.value)


def test_unknown_key_inside_method_is_named_without_union_tag():
    with pytest.raises(TunesmithError) as err:
        load_recipe({**BASE, "method": {"name": "supervised", "lora": {"rank": 4}}})
    assert "unknown key 'method.lora.rank'" in str(err.value)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [("learning_rate", "lr"), ("lr_scheduler_type", "lr_scheduler"), ("neftune_noise_alpha", "neftune_alpha")],
)
def test_key_from_hf_training_arguments_names_its_replacement(theirs, ours):
    with pytest.raises(TunesmithError, match=f"called '{ours}'"):
        load_recipe({**BASE, "train": {theirs: 1e-4}})


def test_set_overrides_nested_fields_with_yaml_typing():
    recipe = load_recipe(BASE, ["train.lr=3e-5", "train.epochs=2", "method.lora.r=4", "data.validation=null"])
    assert recipe.train.lr == 3e-5 and recipe.train.epochs == 2 and recipe.method.lora.r == 4
    assert recipe.data.validation is None


def test_set_reaches_into_a_stage_and_a_list_by_position():
    staged = {
        **BASE,
        "stages": [{"name": "mlm", "method": "domain_adaptation", "train": {"lr": 1e-4}}, {"name": "task"}],
        "eval": {"metrics": ["rouge", "repetition"]},
    }
    recipe = load_recipe(
        staged,
        ["stages.0.method.max_tokens=8000", "stages.1.train.lr=5e-5", "stages.0.train.lr=2e-4", "eval.metrics.1=rouge"],
    )
    first, last = recipe.stages
    assert first.method.name == "domain_adaptation" and first.method.max_tokens == 8000 and first.train.lr == 2e-4
    assert last.train.lr == 5e-5 and recipe.eval.metrics == ["rouge", "rouge"]
    with pytest.raises(TunesmithError, match="'2' is not a position in that list; it has 2 item"):
        load_recipe(staged, ["stages.2.train.lr=1e-5"])
    with pytest.raises(TunesmithError, match="'first' is not a position"):
        load_recipe(staged, ["stages.first.train.lr=1e-5"])
    with pytest.raises(TunesmithError, match="'train' is not a section"):
        load_recipe(BASE, ["data.train.x=1"])


def test_yaml_nested_past_the_stack_is_a_clear_error_in_a_recipe_and_an_override(tmp_path):
    deep = "[" * 50_000 + "]" * 50_000  # PyYAML composes recursively: RecursionError, not a YAMLError
    (tmp_path / "deep.yaml").write_text(f"model: tiny-bert\ndata: {deep}\n")
    with pytest.raises(TunesmithError, match="nested too deeply to be a recipe"):
        load_recipe(tmp_path / "deep.yaml")
    with pytest.raises(TunesmithError, match=r"nested too deeply") as err:
        load_recipe(BASE, [f"train.lr={deep}"])
    assert len(str(err.value)) < 400  # the override is named, not echoed whole


def test_wrong_type_and_range_are_reported_with_the_value():
    with pytest.raises(TunesmithError) as err:
        load_recipe({**BASE, "train": {"batch_size": "big", "lr": -1}})
    text = str(err.value)
    assert "train.batch_size" in text and "'big'" in text and "train.lr" in text


def test_missing_required_section():
    with pytest.raises(TunesmithError, match="missing required key 'data'"):
        load_recipe({"model": {"name": "x"}})


def test_yaml_syntax_error_gives_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: tiny-bert\ndata: [unclosed\n")
    with pytest.raises(TunesmithError, match="line"):
        load_recipe(path)


def test_unknown_method_name_is_rejected():
    with pytest.raises(TunesmithError, match="method"):
        load_recipe({**BASE, "method": {"name": "magic"}})


def test_schema_export_documents_fields():
    schema = json_schema()
    text = json.dumps(schema)
    assert "Peak learning rate" in text and schema["title"] == "Recipe"


def test_recipe_round_trips_through_python_object():
    recipe = Recipe.model_validate(BASE)
    again = load_recipe(recipe)
    assert again.model.name == "tiny-bert"


def test_the_recipe_reference_in_docs_is_the_one_the_schema_renders():
    # regenerate with: tunesmith recipe reference > docs/recipe-reference.md
    from tunesmith.cli.reference import reference_markdown
    from tunesmith.methods import train_defaults
    from tunesmith.recipe import json_schema

    shipped = (Path(__file__).resolve().parents[1] / "docs" / "recipe-reference.md").read_text(encoding="utf-8")
    rendered = reference_markdown(json_schema(), train_defaults())
    assert shipped == rendered, (
        "docs/recipe-reference.md is stale: run `tunesmith recipe reference > docs/recipe-reference.md`"
    )
    for key in (
        "`train.lr`",
        "`data.label_separator`",
        "`method.lora.r`",
        "`experiences[].name`",
        "`train.epochs: 10`",
    ):
        assert key in rendered
