"""`tunesmith export`: ONNX for every encoder task (onnxruntime gives Predictor's numbers), GGUF for decoders (read
back by transformers with the merged model's logits; an Ollama Modelfile rendering turns as training did), hf
folders that load without tunesmith, and the refusals: wrong format for the task, a folder holding other files."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import tunesmith
from tests import test_multilabel, test_regression, test_token_classification
from tests.conftest import sentiment_rows
from tunesmith.cli import app
from tunesmith.export import export_run
from tunesmith.export.modelfile import pieces, render_like_ollama

ort = pytest.importorskip("onnxruntime")
runner = CliRunner()
TEXTS = ["good movie", "it is terrible and bad", "the product", "great great great", "a", "bad good the movie is it"]
SHORT = {"epochs": 1, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0}


def _run(folder, name, recipe):
    return tunesmith.run(
        {**recipe, "train": SHORT, "eval": {"baseline": "none", **recipe.get("eval", {})}}, output_dir=folder / name
    ).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    for name, n, seed in (("train", 64, 0), ("test", 16, 2)):
        sentiment_rows(n, seed).to_csv(folder / f"{name}.csv", index=False)
    data = {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")}
    chat = folder / "chat.jsonl"
    chat.write_text(
        "\n".join(json.dumps({"prompt": f"where is my order {i}", "response": "track_order"}) for i in range(16))
    )
    free = {"freeze_embeddings": False}
    for sub in ("ml", "rg", "tk"):
        (folder / sub).mkdir()
    return {
        "classifier": _run(folder, "classifier", {"model": "tiny-bert", "data": data, "method": free}),
        "few_shot": _run(
            folder,
            "few_shot",
            {
                "model": "tiny-bert",
                "data": {**data, "samples_per_class": 4},
                "method": {"name": "few_shot", "pairs_per_example": 2},
            },
        ),
        "multi_label": _run(
            folder,
            "multi_label",
            test_multilabel.recipe(test_multilabel.write_sets(folder / "ml"), label_separator="|"),
        ),
        "few_shot_multi_label": _run(
            folder,
            "few_shot_multi_label",
            {**test_multilabel.few_shot_recipe(folder / "ml"), "method": {"name": "few_shot", "pairs_per_example": 2}},
        ),
        "regression": _run(folder, "regression", test_regression.recipe(test_regression.write_sets(folder / "rg"))),
        "tokens": _run(
            folder, "tokens", test_token_classification.recipe(test_token_classification.write_sets(folder / "tk"))
        ),
        "chat": _run(
            folder,
            "chat",
            {
                "task": "generation",
                "model": "tiny-llama",
                "data": {"train": str(chat)},
                "eval": {"max_samples": 2, "max_new_tokens": 4},
            },
        ),
        "folder": folder,
    }


def _onnx(path, texts, pairs=None):
    from transformers import AutoTokenizer

    record = json.loads((path / "export.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(path)
    enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=record["max_length"], return_tensors="np")
    session = ort.InferenceSession(str(path / "model.onnx"))
    return session.run(None, {k: enc[k].astype(np.int64) for k in record["inputs"]})[0], record, enc


@pytest.mark.parametrize("kind", ["classifier", "few_shot", "multi_label", "few_shot_multi_label"])
def test_onnx_gives_the_predictors_probabilities(runs, kind, tmp_path):
    record = export_run(runs[kind], "onnx", tmp_path / "onnx")
    assert record["parity"]["max_abs_difference"] < 1e-4 and (tmp_path / "onnx" / "model.onnx").is_file()
    probs, saved, _ = _onnx(tmp_path / "onnx", TEXTS)
    predictor = tunesmith.Predictor.load(runs[kind], precision="fp32")  # the export is fp32; "auto" is bf16 on AMX CPUs
    assert saved["labels"] == list(predictor.classes_)
    np.testing.assert_allclose(probs, predictor.predict_proba(TEXTS), atol=1e-4)
    if kind.endswith("multi_label"):
        assert saved["thresholds"] == predictor.thresholds["per_label"]
    else:
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_onnx_regression_scores_are_in_the_labels_units(runs, tmp_path):
    export_run(runs["regression"], "onnx", tmp_path / "onnx")
    scores, saved, _ = _onnx(tmp_path / "onnx", TEXTS)
    assert saved["output"] == "scores" and scores.shape == (len(TEXTS),)
    np.testing.assert_allclose(
        scores, tunesmith.Predictor.load(runs["regression"], precision="fp32").predict(TEXTS), atol=1e-3
    )


def test_onnx_token_classification_gives_per_token_tag_probabilities(runs, tmp_path):
    export_run(runs["tokens"], "onnx", tmp_path / "onnx")
    probs, saved, enc = _onnx(tmp_path / "onnx", ["good great movie", "the bad"])
    predictor = tunesmith.Predictor.load(runs["tokens"], precision="fp32")
    assert saved["labels"] == predictor.labels and probs.shape[:2] == enc["input_ids"].shape
    tags = predictor.predict_tags([["good", "great", "movie"]])[0]
    words = enc.word_ids(0)
    firsts = [words.index(w) for w in range(3)]
    assert [saved["labels"][int(probs[0, i].argmax())] for i in firsts] == tags


def test_gguf_round_trip_and_an_ollama_modelfile(runs, tmp_path):
    done = runner.invoke(
        app, ["export", str(runs["chat"]), "--format", "gguf", "--gguf-type", "f32", "-o", str(tmp_path / "g")]
    )
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "g" / "export.json").read_text())
    trip = record["round_trip"]
    assert trip["max_abs_logit_difference"] < 1e-4 and trip["same_next_token"] == trip["prompts"] == 5
    modelfile = (tmp_path / "g" / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and 'PARAMETER stop "</s>"' in modelfile and "{{ .Content }}" in modelfile
    half = export_run(runs["chat"], "gguf", tmp_path / "h", gguf_type="q8_0")
    assert half["round_trip"]["max_abs_logit_difference"] < 0.05
    assert (tmp_path / "h" / "model.gguf").stat().st_size < (tmp_path / "g" / "model.gguf").stat().st_size / 2


SMOLLM_TEMPLATE = (  # SmolLM2-Instruct's template: a default system prompt when the conversation has none
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a "
    "helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] "
    "+ '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize("template", [None, SMOLLM_TEMPLATE])
def test_the_modelfile_template_renders_turns_as_training_did(runs, template):
    from tunesmith.tasks.generation.formatting import ensure_chat_template, render

    tokenizer = tunesmith.Predictor.load(runs["chat"]).tokenizer
    if template:
        tokenizer.chat_template = template
    ensure_chat_template(tokenizer)
    p = pieces(tokenizer)
    chats = [
        [{"role": "user", "content": "hi"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "where is my order?"},
        ],
    ]
    for chat in chats:
        assert render_like_ollama(p, chat) == render(tokenizer, chat, add_generation_prompt=True)
    assert bool(p["default"]) == bool(template) and (not template or p["default"].startswith("You are a helpful"))


def test_hf_exports_load_with_transformers_alone(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    export_run(runs["classifier"], "hf", tmp_path / "c")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "c")
    assert sorted(model.config.id2label.values()) == ["negative", "positive"]
    assert runner.invoke(app, ["export", str(runs["chat"]), "--merge", "-o", str(tmp_path / "m")]).exit_code == 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.model_type == "llama"


@pytest.mark.parametrize(
    "kind, fmt, words",
    [
        ("chat", "onnx", ["generation", "gguf"]),
        ("classifier", "gguf", ["classification", "onnx"]),
        ("classifier", "tflite", ["unknown export format", "hf, onnx, gguf"]),
    ],
)
def test_a_format_that_does_not_fit_the_run_is_refused(runs, kind, fmt, words, tmp_path):
    done = runner.invoke(app, ["export", str(runs[kind]), "--format", fmt, "-o", str(tmp_path / "x")])
    assert done.exit_code != 0 and all(w in done.output for w in words), done.output
    assert not (tmp_path / "x").exists()


def test_export_never_writes_over_files_it_did_not_write(runs, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "model.onnx").write_text("my own file")
    done = runner.invoke(app, ["export", str(runs["classifier"]), "--format", "onnx", "-o", str(target)])
    assert done.exit_code == 2 and "not a tunesmith export" in done.output
    assert (target / "model.onnx").read_text() == "my own file"
    # over an earlier export of ours: its files are replaced, a note the user added beside them stays
    export_run(runs["classifier"], "onnx", tmp_path / "ours")
    (tmp_path / "ours" / "NOTES.txt").write_text("deployed 2026-11-30")
    record = export_run(runs["classifier"], "onnx", tmp_path / "ours")
    assert (tmp_path / "ours" / "NOTES.txt").read_text() == "deployed 2026-11-30" and "NOTES.txt" not in record["files"]


@pytest.mark.parametrize("fmt, name", [("hf", "labels.json"), ("onnx", "tokenizer.json")])
def test_an_export_leaves_a_users_file_of_the_same_name_alone(runs, fmt, name, tmp_path):
    export_run(runs["classifier"], fmt, tmp_path / "c")
    record = json.loads((tmp_path / "c" / "export.json").read_text())
    record["files"].remove(name)  # as if the user had put it there: not in the export's record
    (tmp_path / "c" / "export.json").write_text(json.dumps(record))
    (tmp_path / "c" / name).write_text("mine")
    done = runner.invoke(app, ["export", str(runs["classifier"]), "--format", fmt, "-o", str(tmp_path / "c")])
    assert done.exit_code == 2 and "never writes over" in done.output
    assert (tmp_path / "c" / name).read_text() == "mine"
    assert not any(
        p.name.startswith(".tunesmith-export-") for p in (tmp_path / "c").iterdir()
    )  # no staging left behind
