"""The Python API under hostile arguments: predictors refuse None, non-string items and lone surrogates with a
message naming the item, answer [] with [] and one string with one answer (never a list of characters); generation
refuses nonsense settings; a damaged thresholds.json is a message."""

import json

import pytest

import tunesmith
from tests import test_multilabel
from tests.hostile import finished_run
from tunesmith.errors import TunesmithError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    (folder / "chat.jsonl").write_text("\n".join(json.dumps({"prompt": f"q {i}", "response": "a"}) for i in range(8)))
    chat = tunesmith.run(
        {
            "task": "generation",
            "model": "tiny-llama",
            "data": {"train": str(folder / "chat.jsonl")},
            "train": {"epochs": 1},
            "eval": {"baseline": "none", "max_samples": 1, "max_new_tokens": 2},
        },
        output_dir=folder / "chat",
    ).run_dir
    (folder / "ml").mkdir()
    ml = tunesmith.run(
        {
            **test_multilabel.recipe(test_multilabel.write_sets(folder / "ml"), label_separator="|"),
            "train": {"epochs": 1},
            "eval": {"baseline": "none"},
        },
        output_dir=folder / "multi",
    ).run_dir
    (folder / "c").mkdir()
    return {"classifier": finished_run(folder / "c", folder / "cache"), "chat": chat, "multi": ml}


@pytest.mark.parametrize(
    "texts, words",
    [
        (None, "not NoneType"),
        ([1, 2], r"texts\[0\] is int"),
        (["ok", None], r"texts\[1\] is NoneType"),
        (["good \ud800"], "lone surrogate"),
        ({"a": 1}, "not dict"),
    ],
)
def test_bad_texts_are_named(runs, texts, words):
    clf = tunesmith.Predictor.load(runs["classifier"])
    for call in (clf.predict, clf.predict_proba):
        with pytest.raises(TunesmithError, match=words):
            call(texts)


def test_empty_and_single_inputs(runs):
    clf = tunesmith.Predictor.load(runs["classifier"])
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 2)
    one = clf.predict("great movie")
    assert one in clf.classes_ and one == clf.predict(["great movie"])[0]  # one text, not ten characters
    assert clf.predict_proba("great movie").shape == (2,)
    multi = tunesmith.Predictor.load(runs["multi"])
    assert multi.predict([]) == [] and isinstance(multi.predict("a text"), list)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_new_tokens": -5}, "max_new_tokens"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
    ],
)
def test_generation_settings_are_checked(runs, kwargs, words):
    chat = tunesmith.Predictor.load(runs["chat"])
    with pytest.raises(TunesmithError, match=words):
        chat.generate(["hi"], **kwargs)
    with pytest.raises(TunesmithError, match=words):
        list(chat.stream([{"role": "user", "content": "hi"}], **kwargs))


@pytest.mark.parametrize(
    "prompts, words",
    [
        (None, "NoneType"),
        ([1], r"prompts\[0\]"),
        ([[{"role": "bot", "content": "x"}]], "role"),
        (["hi \udfff"], "lone surrogate"),
    ],
)
def test_bad_prompts_are_named(runs, prompts, words):
    chat = tunesmith.Predictor.load(runs["chat"])
    with pytest.raises(TunesmithError, match=words):
        chat.generate(prompts)
    assert chat.generate([]) == []


@pytest.mark.parametrize(
    "content", ['{"per_label": ["a", "b", "c"]}', '{"per_label": [0.5]}', "not json", '{"per_label": [2, -1, 0.5]}']
)
def test_a_damaged_thresholds_file_is_a_message(runs, tmp_path, content):
    import shutil

    run = shutil.copytree(runs["multi"], tmp_path / "run")
    (run / "model" / "thresholds.json").write_text(content)
    with pytest.raises(TunesmithError, match="thresholds.json is damaged"):
        tunesmith.Predictor.load(run).predict(["a text"])


@pytest.mark.parametrize("source", [None, 42, ["model: tiny-bert"]])
def test_a_recipe_of_the_wrong_type_is_a_message(source):
    with pytest.raises(TunesmithError, match="give a YAML file's path, a dict or a tunesmith.Recipe"):
        tunesmith.run(source)
