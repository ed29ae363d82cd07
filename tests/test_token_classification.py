"""task: token_classification (named entities): IOB2 tokens/tags or character spans, a tag per word trained on
its first sub-token, entity F1 with seqeval base vs tuned, entities with offsets from predict."""

import json
import random

import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app

runner = CliRunner()
# in the tiny model's vocabulary: "movie"/"product" are ITEM entities, "good great" a two-word PRAISE entity
FILLER = ["the", "a", "and", "is", "it", "not", "bad"]


def sentence(rng) -> tuple[list[str], list[str]]:
    words, tags = [], []
    for _ in range(rng.randint(3, 7)):
        roll = rng.random()
        if roll < 0.2:
            words += [rng.choice(["movie", "product"])]
            tags += ["B-ITEM"]
        elif roll < 0.3:
            words += ["good", "great"]
            tags += ["B-PRAISE", "I-PRAISE"]
        else:
            words.append(rng.choice(FILLER))
            tags.append("O")
    return words, tags


def write_sets(folder, spans: bool = False) -> dict:
    paths = {}
    for name, n, seed in (("train", 240, 0), ("validation", 50, 1), ("test", 50, 2)):
        rng, lines = random.Random(seed), []
        for _ in range(n):
            words, tags = sentence(rng)
            if spans:
                text, entities, pos = " ".join(words), [], 0
                starts = []
                for w in words:
                    starts.append(pos)
                    pos += len(w) + 1
                for i, tag in enumerate(tags):
                    if tag.startswith("B-"):
                        j = i
                        while j + 1 < len(tags) and tags[j + 1] == "I-" + tag[2:]:
                            j += 1
                        entities.append({"start": starts[i], "end": starts[j] + len(words[j]), "label": tag[2:]})
                lines.append(json.dumps({"text": text, "entities": entities}))
            else:
                lines.append(json.dumps({"tokens": words, "tags": tags}))
        paths[name] = str(folder / f"{name}.jsonl")
        (folder / f"{name}.jsonl").write_text("\n".join(lines))
    return paths


def recipe(paths: dict) -> dict:
    return {
        "task": "token_classification",
        "model": "tiny-bert",
        "data": paths,
        "method": {"freeze_embeddings": False},
        "train": {"epochs": 8, "lr": 5e-3, "batch_size": 16, "warmup_ratio": 0.0, "early_stopping": {"patience": 4}},
    }


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    paths = write_sets(folder)
    return tunesmith.run(recipe(paths), output_dir=folder / "run"), paths


def test_tuned_model_finds_entities_and_reports_base_vs_tuned(ner_run):
    result, _ = ner_run
    m = result.metrics
    assert m["task"] == "token_classification" and m["entity_types"] == ["ITEM", "PRAISE"]
    assert m["labels"][0] == "O" and set(m["labels"]) == {"O", "B-ITEM", "B-PRAISE", "I-PRAISE"}
    assert m["tuned"]["f1"] > 0.8 and m["tuned"]["token_accuracy"] > 0.9
    assert set(m["tuned"]["per_type"]) == {"ITEM", "PRAISE"}
    assert "per token" in m["base"]["kind"] and 0 <= m["base"]["f1"] <= 1
    report = (result.run_dir / "report.md").read_text()
    base_praise = m["base"]["per_type"]["PRAISE"]["f1-score"]
    assert f"| PRAISE | {base_praise:.3f} | " in report  # each type's base F1 beside the tuned figures


def test_predict_returns_entities_with_offsets(ner_run, tmp_path):
    result, paths = ner_run
    predictor = tunesmith.Predictor.load(result.run_dir)
    text = "the movie is good great and it is not bad"
    found = predictor.predict([text])[0]
    kinds = {(e["type"], e["text"]) for e in found}
    assert ("ITEM", "movie") in kinds and ("PRAISE", "good great") in kinds
    for e in found:
        assert text[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1
    assert predictor.evaluate(paths["test"])["f1"] == pytest.approx(result.metrics["tuned"]["f1"], abs=1e-6)
    (tmp_path / "in.csv").write_text("text\nthe product is good great\n")
    done = runner.invoke(
        app, ["predict", str(result.run_dir), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.jsonl")]
    )
    assert done.exit_code == 0, done.output
    row = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert {"type": "ITEM", "text": "product"}.items() <= json.loads(row["entities"])[0].items()


def test_the_base_model_answers_with_the_runs_per_token_probe(ner_run, tmp_path):
    """base_head.json holds the base line's probe as numbers: the base body with it as its tag head scores the test
    file as the base line did, and `predict --base` puts its entities beside the tuned model's."""
    import shutil

    from tunesmith.predict import load_base

    result, paths = ner_run
    base = load_base(result.run_dir)
    assert base.evaluate(paths["test"])["f1"] == pytest.approx(result.metrics["base"]["f1"], abs=0.01)
    assert result.metrics["base"]["f1"] > 0.3  # a probe that finds entities, so a wrong head would not match
    (tmp_path / "in.csv").write_text("text\nthe product is good great\n")
    done = runner.invoke(
        app, ["predict", str(result.run_dir), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.jsonl"), "--base"]
    )
    assert done.exit_code == 0, done.output
    row = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert isinstance(json.loads(row["base_entities"]), list) and json.loads(row["entities"])
    copy = tmp_path / "copy"
    shutil.copytree(result.run_dir, copy)
    head = json.loads((copy / "base_head.json").read_text())
    (copy / "base_head.json").write_text(json.dumps({**head, "coef": head["coef"][:-1]}))
    with pytest.raises(tunesmith.TunesmithError, match="not a tag head"):
        load_base(copy)


def test_character_spans_train_as_well(tmp_path):
    paths = write_sets(tmp_path, spans=True)
    result = tunesmith.run(recipe(paths), output_dir=tmp_path / "run")
    assert result.metrics["tuned"]["f1"] > 0.8


def test_first_sub_token_carries_the_tag():
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.tasks.token_classification import encode

    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    labels = ["O", "B-X"]
    rows, firsts, cut = encode(tokenizer, [["zzq", "the"]], [["B-X", "O"]], labels, 64)  # zzq: three pieces
    tagged = [label for label in rows[0]["labels"] if label != -100]
    assert tagged == [1, 0] and cut == 0 and firsts[0][0] == 1
    rows_all, _, _ = encode(tokenizer, [["zzq", "the"]], [["B-X", "O"]], labels, 64, label_all=True)
    assert sum(label == 1 for label in rows_all[0]["labels"]) == 3  # every piece of the word when asked
    _, _, cut = encode(tokenizer, [["the"] * 20], [["O"] * 20], labels, 8)
    assert cut == 1


def test_bad_tags_and_uneven_rows_are_refused(tmp_path):
    from tunesmith.errors import TunesmithError

    (tmp_path / "t.jsonl").write_text(json.dumps({"tokens": ["a", "b"], "tags": ["B-X", "PER"]}))
    with pytest.raises(TunesmithError, match=r"\['PER'\] are not IOB2"):
        tunesmith.run(
            {**recipe({"train": str(tmp_path / "t.jsonl")}), "train": {"data_check": "off"}}, output_dir=tmp_path / "r1"
        )
    (tmp_path / "u.jsonl").write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}))
    done = runner.invoke(
        app, ["data", "check", str(tmp_path / "u.jsonl"), "--task", "token_classification", "--model", "tiny-bert"]
    )
    assert done.exit_code == 1 and "exactly one tag" in " ".join(done.output.split())


def test_data_check_counts_entities_and_reads_iob1_as_iob2(tmp_path):
    paths = write_sets(tmp_path)
    with open(paths["train"], "a") as handle:
        handle.write("\n" + json.dumps({"tokens": ["the", "movie"], "tags": ["O", "I-ITEM"]}))
        handle.write("\n" + json.dumps({"tokens": ["word"] * 40, "tags": ["O"] * 40}))
    (tmp_path / "r.yaml").write_text(json.dumps({**recipe(paths), "train": {"max_length": 16}}))
    done = runner.invoke(app, ["data", "check", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "check")])
    assert done.exit_code == 0, done.output
    entry = json.loads((tmp_path / "check" / "data_check.json").read_text())["datasets"][0]
    assert set(entry["labels"]["train"]) == {"ITEM", "PRAISE"} and entry["iob1_rows"]["train"] == 1
    printed = " ".join(done.output.split())
    assert "read as IOB2" in printed
    assert entry["lengths"]["truncated"] == 1 and "exceed max_length=16 and are read in overlapping windows" in printed


def _as_bioes(tags: list[str]) -> list[str]:
    """IOB2 tags as BIOES: an entity's last word E-, a one-word entity S-."""
    out = []
    for i, tag in enumerate(tags):
        ends = i + 1 == len(tags) or not tags[i + 1].startswith("I-")
        out.append(tag if tag == "O" or not ends else ("S-" if tag.startswith("B-") else "E-") + tag[2:])
    return out


def test_bioes_bilou_and_csv_list_files_are_read_as_their_iob2_jsonl_twins(ner_run, tmp_path):
    from tunesmith.data.tokens import from_bioes

    assert from_bioes(["S-PER", "O", "B-ORG", "I-ORG", "E-ORG"]) == (["B-PER", "O", "B-ORG", "I-ORG", "I-ORG"], True)
    assert from_bioes(["U-LOC", "B-PER", "L-PER"]) == (["B-LOC", "B-PER", "I-PER"], True)  # spaCy's BILOU
    assert from_bioes(["B-PER", "I-PER", "O"]) == (["B-PER", "I-PER", "O"], False)
    result, paths = ner_run
    rows = [json.loads(line) for line in open(paths["test"], encoding="utf-8")]
    bioes = [{**row, "tags": _as_bioes(row["tags"])} for row in rows]
    assert any(t.startswith("S-") for row in bioes for t in row["tags"])  # the twin really differs
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(row) for row in bioes))
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.evaluate(str(tmp_path / "test.jsonl"))["f1"] == predictor.evaluate(paths["test"])["f1"]
    pd.DataFrame(rows).to_csv(tmp_path / "test.csv", index=False)  # list columns saved by pandas: "['EU', ...]"
    assert predictor.evaluate(str(tmp_path / "test.csv")) == predictor.evaluate(paths["test"])
    (tmp_path / "r.yaml").write_text(json.dumps(recipe({**paths, "test": str(tmp_path / "test.jsonl")})))
    done = runner.invoke(app, ["data", "check", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "check")])
    assert done.exit_code == 0, done.output
    entry = json.loads((tmp_path / "check" / "data_check.json").read_text())["datasets"][0]
    assert entry["bioes_rows"]["test"] == sum(row["tags"] != _as_bioes(row["tags"]) for row in rows) > 0
    assert entry["bioes_rows"]["train"] == 0 and "read as IOB2 (S-/U- as B-" in " ".join(done.output.split())


def test_an_io_file_the_type_alone_per_word_is_read_as_iob2(tmp_path):
    from tunesmith.data.token_files import read_tagged
    from tunesmith.recipe import load_recipe

    rows = [
        {
            "tokens": ["Ann", "Lee", "met", "Bob", "in", "Paris"],
            "tags": ["person", "person", "O", "person", "O", "loc"],
        },
        {"tokens": ["nothing", "here"], "tags": ["O", "O"]},
    ]
    (tmp_path / "io.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    data = load_recipe({**recipe({"train": str(tmp_path / "io.jsonl")}), "task": "token_classification"}).data
    split = read_tagged(str(tmp_path / "io.jsonl"), data, "data.train")
    assert split.tags[0] == ["B-person", "I-person", "O", "B-person", "O", "B-loc"] and split.tags[1] == ["O", "O"]
    assert split.io_rows == 1 and split.iob1_rows == 0 and "tagged IO" in split.warnings[0]


def test_the_server_returns_entities(ner_run):
    from fastapi.testclient import TestClient

    from tunesmith.serve import create_app

    result, _ = ner_run
    client = TestClient(create_app([result.run_dir]))
    answer = client.post("/v1/classify", json={"model": result.run_dir.name, "input": ["the movie is good great"]})
    assert answer.status_code == 200, answer.text
    assert (
        answer.json()["data"][0]["entities"]
        == tunesmith.Predictor.load(result.run_dir).predict(["the movie is good great"])[0]
    )


def _dropouts(model) -> tuple[set, set]:
    """(attention-probability dropout rates, every other dropout rate) in a BERT-family model."""
    import torch

    attention = {m.dropout.p for m in model.modules() if type(m).__name__.endswith("SelfAttention")}
    other = {
        m.p
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Dropout) and not name.endswith("attention.self.dropout")
    }
    return attention, other


@pytest.mark.parametrize("setting, expected", [("auto", 0.0), (0.2, 0.2), (None, 0.1)])
def test_tag_models_train_without_attention_dropout_unless_the_recipe_says(setting, expected):
    from tunesmith.methods.token_classification import load_token_model
    from tunesmith.models.loading import resolve_weights
    from tunesmith.recipe import TrainSection

    model = load_token_model(resolve_weights("tiny-bert"), ["O", "B-ITEM"], TrainSection(attention_dropout=setting))
    attention, other = _dropouts(model)
    assert model.config.attention_probs_dropout_prob == 0.1  # the saved config keeps the model's own
    assert attention == {expected} and other == {0.1}  # hidden and classifier dropout untouched


def test_sentence_classifiers_keep_the_models_attention_dropout_by_default():
    from tunesmith.methods.supervised import build_model
    from tunesmith.models.loading import load_causal_lm, resolve_weights, set_attention_dropout
    from tunesmith.recipe import load_recipe

    weights = resolve_weights("tiny-bert")
    model = build_model(
        load_recipe({"model": "tiny-bert", "data": {"train": "x.csv"}}), weights, {}, ["a", "b"], "encoder"
    )
    assert _dropouts(model)[0] == {0.1}
    llama = load_causal_lm(resolve_weights("tiny-llama"))
    assert (
        set_attention_dropout(llama, 0.3) == llama.config.num_hidden_layers
    )  # Llama keeps a float per attention module
    assert {m.attention_dropout for m in llama.modules() if type(m).__name__.endswith("Attention")} == {0.3}


@pytest.mark.parametrize("method", ["few_shot", "few_shot_multilabel", "domain_adaptation"])
def test_every_method_applies_the_recipes_dropout(method):
    """train.dropout and attention_dropout used to be dropped silently by the few-shot and domain-adaptation bodies."""
    from types import SimpleNamespace

    from tunesmith.methods.domain_adaptation import DomainAdaptation
    from tunesmith.methods.few_shot import FewShotContrastive
    from tunesmith.methods.few_shot_multilabel import FewShotMultiLabel
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.recipe import load_recipe

    weights = resolve_weights("tiny-bert")
    recipe = load_recipe(
        {
            "model": "tiny-bert",
            "data": {"train": "x.csv"},
            "method": {"name": method.replace("_multilabel", "")},
            "train": {"dropout": 0.3, "attention_dropout": 0.05},
        }
    )
    plan = SimpleNamespace(
        recipe=recipe,
        weights=weights,
        info={"objective": "mlm"},
        tokenizer=load_tokenizer(weights),
        extra={"words": []},
    )
    strategy = {
        "few_shot": FewShotContrastive,
        "few_shot_multilabel": FewShotMultiLabel,
        "domain_adaptation": DomainAdaptation,
    }[method]
    attention, other = _dropouts(strategy().build(plan, None))
    assert attention == {0.05} and other == {0.3}


def test_iob1_files_are_read_as_iob2_and_their_entities_counted():
    from tunesmith.data.tokens import to_iob2

    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == (
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"],
        True,
    )
    assert to_iob2(["B-PER", "I-PER", "O"]) == (["B-PER", "I-PER", "O"], False)


@pytest.mark.parametrize(
    "entity, words",
    [
        ({"start": "0", "end": 4, "label": "X"}, "whole-number start and end"),
        ({"start": None, "end": 4, "label": "X"}, "whole-number start and end"),
        ({"start": 5, "end": 2, "label": "X"}, "outside its text or reversed"),
        ({"start": 0, "end": 400, "label": "X"}, "outside its text or reversed"),
        ({"start": 0, "end": 4, "label": ""}, "needs a label"),
        ({"start": 4, "end": 5, "label": "X"}, "covers no word"),
    ],
)
def test_bad_entity_spans_are_refused_with_their_row(tmp_path, entity, words):
    from tunesmith.data.token_files import read_tagged
    from tunesmith.errors import TunesmithError
    from tunesmith.recipe import load_recipe

    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "good movie here", "entities": [entity]}))
    data = load_recipe(
        {"task": "token_classification", "model": "tiny-bert", "data": {"train": str(tmp_path / "s.jsonl")}}
    ).data
    with pytest.raises(TunesmithError, match=words) as err:
        read_tagged(str(tmp_path / "s.jsonl"), data, "data.train")
    assert "data row 1" in str(err.value)


def test_overlapping_spans_are_refused_not_overwritten(tmp_path):
    from tunesmith.data.token_files import read_tagged
    from tunesmith.errors import TunesmithError
    from tunesmith.recipe import load_recipe

    spans = [{"start": 0, "end": 10, "label": "A"}, {"start": 5, "end": 15, "label": "B"}]
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "good movie here", "entities": spans}))
    data = load_recipe(
        {"task": "token_classification", "model": "tiny-bert", "data": {"train": str(tmp_path / "s.jsonl")}}
    ).data
    with pytest.raises(TunesmithError, match="overlaps another entity"):
        read_tagged(str(tmp_path / "s.jsonl"), data, "data.train")


def test_character_spans_in_a_csv_read_as_their_jsonl_twin(tmp_path):
    from tunesmith.data.token_files import read_tagged
    from tunesmith.recipe import load_recipe

    spans = [{"start": 0, "end": 4, "label": "PRAISE"}, {"start": 5, "end": 10, "label": "ITEM"}]
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "good movie here", "entities": spans}))
    frame = pd.DataFrame({"text": ["good movie here"] * 2, "entities": [json.dumps(spans), repr(spans)]})
    frame.to_csv(tmp_path / "s.csv", index=False)  # JSON text, and a Python list as pandas writes one
    data = load_recipe({"task": "token_classification", "model": "tiny-bert", "data": {"train": "x"}}).data
    twin = read_tagged(str(tmp_path / "s.jsonl"), data, "data.train")
    read = read_tagged(str(tmp_path / "s.csv"), data, "data.train")
    assert read.tags == list(twin.tags) * 2 == [["B-PRAISE", "B-ITEM", "O"]] * 2


def _as_conll(jsonl: str, target) -> str:
    """The JSONL set as a CoNLL file: a -DOCSTART- line, a part-of-speech field between word and tag, tabs and
    spaces, and no blank line after the last sentence."""
    lines = ["-DOCSTART- -X- O", ""]
    for i, row in enumerate(json.loads(line) for line in open(jsonl, encoding="utf-8")):
        sep = "\t" if i % 2 else " "
        lines += [f"{w}{sep}NN{sep}{t}" for w, t in zip(row["tokens"], row["tags"])] + [""]
    target.write_text("\n".join(lines).rstrip("\n"), encoding="utf-8")
    return str(target)


def test_conll_files_read_train_and_score_as_their_jsonl_twins(ner_run, tmp_path):
    from tunesmith.data.readers import iter_table, read_table

    result, paths = ner_run
    conll = {name: _as_conll(paths[name], tmp_path / f"{name}.conll") for name in ("train", "validation", "test")}
    frame = read_table(conll["test"])
    rows = [json.loads(line) for line in open(paths["test"], encoding="utf-8")]
    assert frame["tokens"].tolist() == [r["tokens"] for r in rows] and frame["tags"].tolist() == [
        r["tags"] for r in rows
    ]
    assert sum(len(chunk) for chunk in iter_table(conll["test"], rows=7)) == len(rows)
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.evaluate(conll["test"])["f1"] == pytest.approx(predictor.evaluate(paths["test"])["f1"], abs=1e-9)
    spec = recipe(conll)
    run = tunesmith.run({**spec, "train": {**spec["train"], "epochs": 1}}, output_dir=tmp_path / "run")
    assert run.metrics["train"]["train_size"] == 240 and run.metrics["eval_size"] == 50


def test_a_broken_conll_file_is_refused_with_its_line(tmp_path, monkeypatch):
    from tunesmith.data import readers

    (tmp_path / "one_field.conll").write_text("Ann B-PER\nruns\n\n", encoding="utf-8")
    with pytest.raises(tunesmith.TunesmithError, match=r"one_field.conll:2: a CoNLL line holds a word and its tag"):
        readers.read_table(tmp_path / "one_field.conll")
    monkeypatch.setattr(readers, "MAX_SENTENCE_WORDS", 5)
    (tmp_path / "no_blank.conll").write_text("".join(f"w{i} O\n" for i in range(9)), encoding="utf-8")
    with pytest.raises(tunesmith.TunesmithError, match=r"no_blank.conll:6: over 5 words without a blank line"):
        readers.read_table(tmp_path / "no_blank.conll")


def test_a_document_longer_than_max_length_is_tagged_to_its_end(ner_run):
    """A text past max_length is read in overlapping windows of words: the entities at its end are found as those
    at its start are (read once, its cut words had uniform scores: no entity, or a spurious one on every word)."""
    from tunesmith.predict import Predictor
    from tunesmith.tasks.token_classification import word_windows

    result, _ = ner_run
    predictor = Predictor.load(result.run_dir)
    short = "the movie is good great and the product is not bad"
    found = predictor.predict(short)
    assert [e["type"] for e in found] == ["ITEM", "PRAISE", "ITEM"]
    document = " ".join([short] * 12)  # ~130 words, several windows at max_length 32
    predictor.max_length = 32
    types = [e["type"] for e in predictor.predict(document)]
    assert types == ["ITEM", "PRAISE", "ITEM"] * 12, types
    tail = predictor.predict(document)[-1]
    assert document[tail["start"] : tail["end"]] == "product" and tail["end"] == document.rindex("product") + 7
    windows = word_windows(predictor.tokenizer, document.split(), 32)
    assert windows[0][0] == 0 and windows[-1][1] == len(document.split()) and len(windows) > 4
    assert all(b[0] < a[1] for a, b in zip(windows, windows[1:]))  # each shares words with the next


def test_entities_past_max_length_in_training_documents_are_learned(tmp_path):
    """Training texts longer than max_length train as overlapping windows of words: entities that sit only past
    the cut (here, after 24 filler words) are learned, where a single cut read threw them all away (F1 0.0)."""
    paths = write_sets(tmp_path)
    rng = random.Random(5)
    long_docs = []
    for line in (tmp_path / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        filler = [rng.choice(FILLER) for _ in range(24)]
        long_docs.append(json.dumps({"tokens": filler + row["tokens"], "tags": ["O"] * 24 + row["tags"]}))
    (tmp_path / "train.jsonl").write_text("\n".join(long_docs))
    long = recipe(paths)
    long["train"]["max_length"] = 20
    result = tunesmith.run(long, output_dir=tmp_path / "run")
    train = result.metrics["train"]
    assert train["truncated"] == 240 and train["train_size"] > 480  # every document cut, each read as 2+ windows
    assert result.metrics["tuned"]["f1"] > 0.8
    assert "trained as overlapping windows of words" in (result.run_dir / "report.md").read_text()
