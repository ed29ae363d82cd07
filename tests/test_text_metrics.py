"""eval.metrics for free-text answers: each metric on hand-made answers whose right value is known, then in a run
(base and tuned alike, in metrics.json and report.md)."""

import json
import math

import pytest

import tunesmith
from tests.test_generation_run import gen_data, recipe  # noqa: F401  (fixture and recipe of the generation tests)
from tunesmith.errors import TunesmithError
from tunesmith.tasks.generation.text_metrics import faithfulness, repetition, text_metrics

SOURCE = "Acme's revenue rose 12% to $3,400 million in 2023, the company said on Tuesday in Berlin."


def test_rouge_length_and_repetition_on_known_answers():
    same = text_metrics(["rouge", "length_ratio"], ["the cat sat on the mat"], ["the cat sat on the mat"], [""])
    assert same == {"rouge_1": 1.0, "rouge_2": 1.0, "rouge_l": 1.0, "length_ratio": 1.0}
    other = text_metrics(["rouge", "length_ratio"], ["dogs bark loudly at night too"], ["the cat sat"], [""])
    assert other["rouge_1"] == other["rouge_2"] == other["rouge_l"] == 0.0 and other["length_ratio"] == 2.0
    stemmed = text_metrics(["rouge"], ["cats running"], ["cat runs"], [""])  # the stemmer makes these equal
    assert stemmed["rouge_1"] == 1.0
    assert repetition("one two three four five six") == 0.0
    assert repetition("we can help we can help we can help") == pytest.approx(3 / 6)  # 6 4-grams, 3 distinct


def test_faithfulness_counts_supported_words_and_lists_numbers_the_source_does_not_hold():
    right = faithfulness(["Acme revenue rose 12% to 3,400 million in 2023."], [SOURCE])
    assert right == {"faithfulness": 1.0, "unsupported_numbers": []}
    wrong = faithfulness(["Acme revenue fell 15% in 2024 in Paris."], [SOURCE])
    # content words: acme revenue fell 15% 2024 paris -> acme, revenue supported
    assert wrong["faithfulness"] == pytest.approx(2 / 6)
    assert wrong["unsupported_numbers"] == [{"index": 0, "numbers": ["15%", "2024"]}]
    # only stop words: nothing to judge, so no score (nan), never a perfect one
    assert math.isnan(faithfulness(["the and of"], [SOURCE])["faithfulness"])


@pytest.mark.real
def test_semantic_similarity_ranks_a_paraphrase_above_an_unrelated_answer():
    reference = ["Your refund will reach your card within five business days."]
    close = text_metrics(
        ["semantic_similarity"], ["The money goes back to your card in about five working days."], reference, [""]
    )
    far = text_metrics(["semantic_similarity"], ["Our stores open at nine on Sundays."], reference, [""])
    assert 0.6 < close["semantic_similarity"] <= 1.0 and far["semantic_similarity"] < close["semantic_similarity"] - 0.3


@pytest.mark.real
def test_a_run_scores_base_and_tuned_with_the_metrics_the_recipe_names(gen_data, tmp_path):  # noqa: F811
    asked = ["rouge", "semantic_similarity", "length_ratio", "repetition", "faithfulness"]
    spec = recipe(gen_data, epochs=1)
    spec["eval"] = {**spec["eval"], "metrics": asked}
    run = tunesmith.run(spec, output_dir=tmp_path / "run")
    keys = {"rouge_1", "rouge_2", "rouge_l", "semantic_similarity", "length_ratio", "repetition", "faithfulness"}
    for side in ("base", "tuned"):
        assert keys <= set(run.metrics[side]) and isinstance(run.metrics[side]["unsupported_numbers"], list)
        assert 0 <= run.metrics[side]["rouge_1"] <= 1 and run.metrics[side]["length_ratio"] >= 0
    saved = json.loads((run.run_dir / "metrics.json").read_text())
    assert saved["tuned"]["semantic_similarity"] == run.metrics["tuned"]["semantic_similarity"]
    report = (run.run_dir / "report.md").read_text()
    assert "| semantic_similarity |" in report and "| faithfulness |" in report
    scored = tunesmith.Predictor.load(run.run_dir).evaluate(gen_data["test"])  # `tunesmith eval` on any file
    assert keys <= set(scored) and scored["generated"] == 12


def test_an_unknown_metric_is_a_schema_error_naming_the_key(gen_data, tmp_path):  # noqa: F811
    spec = recipe(gen_data)
    spec["eval"] = {**spec["eval"], "metrics": ["rouge", "bleu"]}
    with pytest.raises(TunesmithError, match="eval.metrics"):
        tunesmith.run(spec, output_dir=tmp_path / "run")
