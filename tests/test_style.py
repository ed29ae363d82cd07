"""Brand voice: the style judge learns the brand's texts against the base model's, and a run reports it."""

import json
import random

import pytest

import tunesmith
from tunesmith.errors import TunesmithError
from tunesmith.tasks.generation.style import StyleJudge, distinctive_ngrams, fit_style_judge

PRODUCTS = ["runner", "trail shoe", "hoodie", "track jacket", "sports bra", "backpack", "cap", "sock"]


def brand_copy(rng: random.Random) -> str:
    item = rng.choice(PRODUCTS)
    return (
        f"Made for the streets and built to last, this {item} keeps you moving. "
        f"Boost cushioning and recycled materials, part of our commitment to end plastic waste."
    )


def generic_copy(rng: random.Random) -> str:
    item = rng.choice(PRODUCTS)
    return f"Here is a description of the {item}. It is a good product that many people like to use every day."


def test_the_judge_tells_the_brand_from_generic_copy_and_names_its_ngrams():
    rng = random.Random(0)
    judge = fit_style_judge([brand_copy(rng) for _ in range(40)], [generic_copy(rng) for _ in range(40)])
    assert judge.judge_accuracy >= 0.9 and judge.describe()["brand_texts"] == 40
    assert "boost cushioning" in judge.ngrams and "description" not in judge.ngrams
    brand = judge.score([brand_copy(rng) for _ in range(10)])
    generic = judge.score([generic_copy(rng) for _ in range(10)])
    assert brand["style_match"] >= 0.9 and generic["style_match"] <= 0.1
    assert brand["brand_ngrams"] > generic["brand_ngrams"]
    assert judge.score(["", "   "]) == {"style_match": 0.0, "brand_ngrams": 0.0}  # nothing written: not the brand
    mixed = [brand_copy(rng) if i % 3 else generic_copy(rng) for i in range(12)]
    again = StyleJudge.from_json(json.loads(json.dumps(judge.to_json())))  # as a run saves and eval reads it
    assert again.score(mixed) == judge.score(mixed) and again.ngrams == judge.ngrams


@pytest.mark.parametrize(
    "saved",
    [
        {"weights": "rm -rf /", "bias": 0.0, "judge_accuracy": 1.0, "ngrams": []},
        {"weights": [float("nan")] * 384, "bias": 0.0, "judge_accuracy": 1.0, "ngrams": []},
        {"weights": [[0.0] * 384], "bias": 0.0, "judge_accuracy": 1.0, "ngrams": []},
        {"weights": [0.0] * 384, "judge_accuracy": 1.0, "ngrams": []},
    ],
)
def test_a_saved_judge_that_is_not_one_is_refused(saved):
    with pytest.raises(ValueError, match="style_judge.json"):
        StyleJudge.from_json(saved)


def test_distinctive_ngrams_need_the_brand_to_use_them_more_than_chance():
    brand = ["our iconic three stripes"] * 2 + ["plain words here"] * 3  # "iconic" twice: below the minimum count
    other = ["plain words here"] * 5
    assert distinctive_ngrams(brand, other) == []


@pytest.fixture(scope="module")
def brand_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brand")
    rng = random.Random(1)
    for name, n in (("train", 48), ("test", 8)):
        rows = [
            {"prompt": f"Write copy for the {rng.choice(PRODUCTS)}.", "response": brand_copy(rng)} for _ in range(n)
        ]
        (tmp / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp


def test_a_run_with_style_reference_scores_base_and_tuned(brand_data, tmp_path, logged):
    recipe = {
        "task": "generation",
        "model": "tiny-llama",
        "data": {"train": str(brand_data / "train.jsonl"), "test": str(brand_data / "test.jsonl")},
        "method": {"tuning": "full"},
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3},
        "eval": {"max_new_tokens": 8, "style_reference": "train"},
    }
    run = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = run.metrics
    for side in ("base", "tuned"):
        assert 0.0 <= m[side]["style_match"] <= 1.0 and m[side]["brand_ngrams"] >= 0.0
    assert m["style"]["brand_texts"] == 43  # the 48 rows less the validation split drawn from them
    assert m["style"]["base_texts"] <= 43 and 0.0 <= m["style"]["judge_accuracy"] <= 1.0
    assert "| style_match |" in (run.run_dir / "report.md").read_text()
    assert "style: the judge tells the brand from the base model" in logged()
    saved = json.loads((run.run_dir / "style_judge.json").read_text())
    assert saved["ngrams"] == m["style"]["ngrams"] and len(saved["weights"]) == 384  # numbers, never a pickle

    from typer.testing import CliRunner

    from tunesmith.cli import app

    # `tunesmith eval` on new prompts scores the answers with the run's own judge, as training's evaluation did
    done = CliRunner().invoke(
        app, ["eval", str(run.run_dir), "--data", str(brand_data / "test.jsonl"), "-o", str(tmp_path / "e.json")]
    )
    assert done.exit_code == 0, done.output
    scored = json.loads((tmp_path / "e.json").read_text())
    assert 0.0 <= scored["style_match"] <= 1.0 and scored["brand_ngrams"] >= 0.0 and scored["generated"] == 8
    (run.run_dir / "style_judge.json").write_text(json.dumps({**saved, "weights": saved["weights"][:10]}))
    damaged = CliRunner().invoke(app, ["eval", str(run.run_dir), "--data", str(brand_data / "test.jsonl")])
    assert damaged.exit_code == 2 and "style_judge.json" in damaged.output


def test_style_reference_needs_prompts_and_responses(tmp_path):
    rows = [{"text": f"note {i} about the clinic and its patients"} for i in range(40)]
    (tmp_path / "notes.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    recipe = {
        "task": "generation",
        "model": "tiny-llama",
        "data": {"train": str(tmp_path / "notes.jsonl")},
        "eval": {"style_reference": "train"},
    }
    with pytest.raises(TunesmithError, match="style_reference: train needs prompts and responses"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")
