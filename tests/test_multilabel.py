"""Multi-label classification: label sets from lists or a separator, a sigmoid head with BCE, thresholds
chosen on validation and saved with the model, micro/macro F1 base vs tuned, label sets from predict."""

import json
import random

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app

runner = CliRunner()
# in the tiny model's vocabulary, so each topic is one learnable token
TOPICS = {"praise": ["good", "great"], "complaint": ["bad", "terrible"], "item": ["movie", "product"]}


def tagged_rows(n: int, seed: int) -> pd.DataFrame:
    """Each text mentions the words of one or two topics (or none); its labels are those topics."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        topics = rng.sample(sorted(TOPICS), rng.choice([0, 1, 1, 2]))
        words = [rng.choice(TOPICS[t]) for t in topics]
        # every text has 5 words: batches grouped by length must not also be grouped by how many labels they carry
        words += rng.sample(["the", "a", "and", "is", "it", "not"], 5 - len(words))
        rng.shuffle(words)
        out.append({"text": " ".join(words), "labels": "|".join(sorted(topics))})
    return pd.DataFrame(out)


def write_sets(folder, as_lists: bool = False) -> dict:
    paths = {}
    for name, n, seed in (("train", 240, 0), ("validation", 60, 1), ("test", 60, 2)):
        frame = tagged_rows(n, seed)
        if as_lists:
            frame["labels"] = frame["labels"].map(lambda s: s.split("|") if s else [])
            paths[name] = str(folder / f"{name}.jsonl")
            frame.to_json(paths[name], orient="records", lines=True)
        else:
            paths[name] = str(folder / f"{name}.csv")
            frame.to_csv(paths[name], index=False)
    return paths


def recipe(paths: dict, **data) -> dict:
    return {
        "model": "tiny-bert",
        "data": {**paths, "label_column": "labels", **data},
        # the tiny random model's pooled features are too poor to start a head from: keep it random here
        "method": {"freeze_embeddings": False, "head_init": "random"},
        "train": {"epochs": 12, "lr": 5e-3, "batch_size": 16, "warmup_ratio": 0.0, "early_stopping": {"patience": 4}},
    }


def few_shot_recipe(folder) -> dict:
    """8 texts per label combination seen (a few-shot budget), full validation and test sets, label strings."""
    frame = pd.read_csv(folder / "train.csv", keep_default_na=False)
    few = frame.groupby("labels", group_keys=False).head(8)
    few.to_csv(folder / "few.csv", index=False)
    return {
        "model": "tiny-bert",
        "data": {
            "train": str(folder / "few.csv"),
            "validation": str(folder / "validation.csv"),
            "test": str(folder / "test.csv"),
            "label_column": "labels",
            "label_separator": "|",
        },
    }


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multilabel")
    paths = write_sets(folder)
    return tunesmith.run(recipe(paths, label_separator="|"), output_dir=folder / "run"), paths


def test_tuned_model_learns_label_sets_and_beats_nothing_learned(multilabel_run):
    result, _ = multilabel_run
    m = result.metrics
    assert m["task"] == "multi_label" and m["labels"] == ["complaint", "item", "praise"]
    # the tiny random model learns slowly; predicting every label would score ~0.5 micro-F1 here
    assert m["tuned"]["f1_micro"] > 0.7 and m["tuned"]["subset_accuracy"] > 0.3
    assert set(m["tuned"]) >= {"f1_macro", "precision_micro", "recall_micro", "hamming_loss", "per_label"}
    assert "one-vs-rest" in m["base"]["kind"] and "f1_micro" in m["base"]
    assert len(m["thresholds"]["per_label"]) == 3 and 0 < m["thresholds"]["global"] < 1
    assert "| praise |" in (result.run_dir / "report.md").read_text()


def test_predictions_are_label_sets_with_the_saved_thresholds(multilabel_run):
    result, paths = multilabel_run
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.classes_ == ["complaint", "item", "praise"]
    sets = predictor.predict(["the great and the product", "the a is"])
    assert "praise" in sets[0] and "item" in sets[0]
    assert predictor.predict(["the a is"], threshold=0.0) == [["complaint", "item", "praise"]]  # threshold overrides
    assert predictor.predict_proba(["good"]).shape == (1, 3)
    assert predictor.evaluate(paths["test"])["f1_micro"] == pytest.approx(result.metrics["tuned"]["f1_micro"], abs=1e-6)
    saved = json.loads((result.run_dir / "model" / "thresholds.json").read_text())
    assert saved["per_label"] == result.metrics["thresholds"]["per_label"]


def test_predict_writes_label_sets_and_probabilities(multilabel_run, tmp_path):
    result, paths = multilabel_run
    done = runner.invoke(app, ["predict", str(result.run_dir), paths["test"], "-o", str(tmp_path / "out.csv")])
    assert done.exit_code == 0, done.output
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert {"predicted_labels", "probabilities"} <= set(out.columns)
    assert set(json.loads(out["probabilities"][0])) == {"complaint", "item", "praise"}


def test_the_base_model_answers_with_the_runs_regressions_and_thresholds(multilabel_run, tmp_path):
    """base_head.json holds the base line's regression per label and its thresholds: the base body with them scores
    the test file as the base line did, and `predict --base` puts its label sets beside the tuned model's."""
    from tunesmith.predict import load_base

    result, paths = multilabel_run
    base = load_base(result.run_dir)
    assert base.classes_ == ["complaint", "item", "praise"]
    assert base.evaluate(paths["test"])["f1_micro"] == pytest.approx(result.metrics["base"]["f1_micro"], abs=1e-4)
    out = tmp_path / "both.csv"
    done = runner.invoke(app, ["predict", str(result.run_dir), paths["test"], "-o", str(out), "--base"])
    assert done.exit_code == 0, done.output
    rows = pd.read_csv(out, keep_default_na=False)
    assert rows["base_predicted_labels"].tolist() == ["|".join(s) for s in base.predict(rows["text"].tolist())]
    head = json.loads((result.run_dir / "base_head.json").read_text())
    assert head["thresholds"]["per_label"] == pytest.approx(base.thresholds["per_label"])


def test_list_labels_in_jsonl_train_with_multi_label_on(tmp_path):
    paths = write_sets(tmp_path, as_lists=True)
    result = tunesmith.run(recipe(paths, multi_label=True), output_dir=tmp_path / "run")
    assert result.metrics["tuned"]["f1_micro"] > 0.65


def test_without_multi_label_list_labels_are_refused_with_the_way_out(tmp_path):
    paths = write_sets(tmp_path, as_lists=True)
    (tmp_path / "r.yaml").write_text(json.dumps(recipe(paths)))
    done = runner.invoke(app, ["train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")])
    assert done.exit_code == 2 and "multi-label" in " ".join(done.output.split())


def test_lists_written_into_csv_cells_are_read_as_label_sets(multilabel_run, tmp_path):
    """A list column saved to CSV arrives as text: JSON ('["a"]') or, from pandas' to_csv, a Python list ("['a']")."""
    from tunesmith.data.columns import list_cell

    assert list_cell('["praise", "item"]') == ["praise", "item"] and list_cell("['it''s', \"don't\"]") == [
        "its",
        "don't",
    ]
    assert list_cell("[]") == [] and list_cell(" ['a'] ") == ["a"]
    for text in ("praise", "[praise]", "[['a']]", "[__import__('os').getcwd()]", "[{'a': 1}]", "[" + "1," * 9999 + "]"):
        assert list_cell(text) is None, text  # no list of labels, code, nesting, or a cell too long to be one
    result, paths = multilabel_run
    for name, write in (("json", json.dumps), ("python", repr)):
        frame = pd.read_csv(paths["test"], keep_default_na=False)
        frame["labels"] = [write(cell.split("|") if cell else []) for cell in frame["labels"]]
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        predictor = tunesmith.Predictor.load(result.run_dir)
        assert predictor.evaluate(str(tmp_path / f"{name}.csv")) == predictor.evaluate(paths["test"])
    # without multi_label the check says what such labels are, instead of only listing each combination as a class
    (tmp_path / "r.yaml").write_text(json.dumps(recipe({"train": str(tmp_path / "json.csv")})))
    done = runner.invoke(app, ["data", "check", str(tmp_path / "r.yaml")])
    flat = " ".join(done.output.split())
    assert "7 of 7 label values look like lists (e.g. '[]')" in flat and "Set data.multi_label: true" in flat
    rare = ['["praise", "item"]', '["complaint", "item"]', '["praise"]', '["praise"]']
    pd.DataFrame({"text": ["good movie", "bad movie", "great", "good"], "labels": rare}).to_csv(tmp_path / "rare.csv")
    (tmp_path / "rare.yaml").write_text(json.dumps(recipe({"train": str(tmp_path / "rare.csv")})))
    done = runner.invoke(app, ["data", "check", str(tmp_path / "rare.yaml")])
    flat = " ".join(done.output.split())
    assert done.exit_code == 1 and "2 class(es) with fewer than 2 training examples" in flat
    assert "The labels look like lists: set data.multi_label: true." in flat
    # labels joined in a string ('praise|item'): the separator is named, so the fix is one key
    frame = pd.read_csv(paths["train"], keep_default_na=False)
    frame.to_csv(tmp_path / "joined.csv", index=False)
    (tmp_path / "joined.yaml").write_text(json.dumps(recipe({"train": str(tmp_path / "joined.csv")})))
    flat = " ".join(runner.invoke(app, ["data", "check", str(tmp_path / "joined.yaml")]).output.split())
    assert "label values are labels joined with '|'" in flat and "Set data.label_separator: '|'" in flat


def test_only_labels_joined_in_most_values_read_as_label_sets():
    from tunesmith.check.classification import joined_by

    assert joined_by(["billing;refund", "billing", "refund;login", "login"]) == ";"
    assert joined_by(["a|b", "b|c", "a|c", "a"]) == "|"
    assert joined_by(["billing", "refund", "login", "billing;refund"]) == ";"  # few sets, of labels seen alone
    assert joined_by(["positive", "negative", "neutral"]) is None
    assert joined_by(["1,000-5,000", "5,000-10,000", "10,000+"]) is None  # commas inside labels, no shared parts
    assert joined_by(["Health, Fitness", "Travel", "Food"]) is None  # one label with a comma


def test_metrics_average_over_labels_in_play():
    from tunesmith.tasks.multilabel import choose_thresholds, multilabel_metrics

    y = np.array([[1, 0, 0], [0, 1, 0]])
    m = multilabel_metrics(y, y, ["a", "b", "c"])  # label c absent from both: not an F1 of 0
    assert m["f1_micro"] == m["f1_macro"] == m["subset_accuracy"] == 1.0 and m["hamming_loss"] == 0.0
    probs = np.array([[0.9, 0.2, 0.1], [0.3, 0.35, 0.1]])
    chosen = choose_thresholds(y, probs)
    assert chosen["per_label"][1] <= 0.35 and chosen["per_label"][0] > 0.3


def test_data_check_reports_label_sets(tmp_path):
    paths = write_sets(tmp_path)
    (tmp_path / "r.yaml").write_text(json.dumps(recipe(paths, label_separator="|")))
    done = runner.invoke(app, ["data", "check", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "check")])
    assert done.exit_code == 0, done.output
    entry = json.loads((tmp_path / "check" / "data_check.json").read_text())["datasets"][0]
    assert entry["task"] == "multi_label" and set(entry["labels"]["train"]) == {"complaint", "item", "praise"}
    assert entry["rows_without_label"]["train"] > 0


def test_the_head_starts_from_a_probe_per_label():
    """head_init auto: each label's sigmoid starts as a logistic regression on the features the head sees."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from tunesmith.engine.batching import tokenize
    from tunesmith.methods.head_init import head_features, init_multilabel_head, output_layers
    from tunesmith.models.loading import load_classifier, load_tokenizer, resolve_weights

    weights = resolve_weights("tiny-bert")
    frame = tagged_rows(80, 0)
    labels = ["complaint", "item", "praise"]
    targets = np.array([[float(label in row.split("|")) for label in labels] for row in frame["labels"]])
    targets[:, 2] = 0  # a label never on in the sample: weight 0, bias at the (clipped) prior
    model = load_classifier(weights, labels)
    rows, _ = tokenize(load_tokenizer(weights), frame["text"].tolist(), None, 32)
    assert init_multilabel_head(model, rows, targets, 16, 0, "fp32", 0)
    x = head_features(model, output_layers(model, 3), rows, 16, 0, "fp32")
    probe = LogisticRegression(max_iter=1000, random_state=0).fit(x, targets[:, 0])
    with torch.no_grad():
        logits = output_layers(model, 3)[0](torch.as_tensor(x)).numpy()
    assert np.allclose(logits[:, 0], probe.decision_function(x), atol=1e-4)
    assert np.allclose(logits[:, 2], np.log(1e-3 / (1 - 1e-3)), atol=1e-4)


def test_the_server_returns_the_predictors_label_sets(multilabel_run):
    from fastapi.testclient import TestClient

    from tunesmith.serve import create_app

    result, _ = multilabel_run
    texts = ["the great and the product", "bad terrible it is", "the a is"]
    answer = TestClient(create_app([result.run_dir])).post(
        "/v1/classify", json={"model": result.run_dir.name, "input": texts}
    )
    assert answer.status_code == 200, answer.text
    assert [row["labels"] for row in answer.json()["data"]] == tunesmith.Predictor.load(result.run_dir).predict(texts)


def test_set_pairs_share_a_label_or_none_and_are_balanced():
    from tunesmith.methods.pairs import make_set_pairs

    sets = [["a"], ["a", "b"], ["b"], ["c"], [], []]
    pairs = make_set_pairs(sets, 40, seed=0)
    assert len(pairs) == 40 and sum(t for *_, t in pairs) == 20
    for i, j, t in pairs:
        assert i < j and (sets[i] or sets[j])  # two rows without labels say nothing about each other
        assert (t == 1.0) == bool(set(sets[i]) & set(sets[j]))
    assert {(i, j) for i, j, t in pairs if t == 1.0} == {(0, 1), (1, 2)}
    assert make_set_pairs(sets, 40, seed=0) == pairs


def test_few_shot_multi_label_trains_heads_per_label_and_predicts_label_sets(tmp_path):
    paths = write_sets(tmp_path)
    recipe = {
        **few_shot_recipe(tmp_path),
        "method": {"name": "few_shot", "pairs_per_example": 10},
        "train": {"lr": 1e-3},
    }
    result = tunesmith.run(tunesmith.load_recipe(recipe), output_dir=tmp_path / "run")
    m = result.metrics
    assert m["task"] == "multi_label" and m["method"] == "few_shot" and m["labels"] == ["complaint", "item", "praise"]
    assert m["train"]["epochs"] == 1 and m["train"]["pairs"] == 10 * m["train"]["train_size"]
    assert "logistic regression per label" in m["base"]["kind"] and set(m["tuned"]) >= {
        "f1_micro",
        "f1_macro",
        "per_label",
    }
    head = json.loads((result.run_dir / "model" / "head.json").read_text())
    assert head["multi_label"] and len(head["coef"]) == 3 and len(head["intercept"]) == 3
    predictor = tunesmith.Predictor.load(result.run_dir)
    probs = predictor.predict_proba(["good movie", "the a is"])
    assert probs.shape == (2, 3) and ((probs > 0) & (probs < 1)).all()  # independent sigmoids, not a softmax
    assert predictor.predict(["the a is"], threshold=0.0) == [["complaint", "item", "praise"]]
    assert predictor.evaluate(paths["test"])["f1_micro"] == pytest.approx(m["tuned"]["f1_micro"], abs=1e-6)
    from tunesmith.predict import load_base  # the base line's heads on the untuned body, with their thresholds

    assert load_base(result.run_dir).evaluate(paths["test"])["f1_micro"] == pytest.approx(
        m["base"]["f1_micro"], abs=1e-4
    )


def test_samples_per_class_draws_k_rows_per_label_rarest_first():
    from tunesmith.data.multilabel import MultiLabelSplit, sample_per_label

    labels = [["a"]] * 30 + [["a", "b"]] * 5 + [["c"]] * 4 + [[]] * 10
    split = MultiLabelSplit([f"t{i}" for i in range(len(labels))], labels, source="train.csv")
    few = sample_per_label(split, 3, seed=0)
    counts = {x: sum(x in row for row in few.labels) for x in "abc"}
    assert min(counts.values()) >= 3 and counts["c"] == 3 and counts["b"] == 3
    assert counts["a"] == 3  # the rows drawn for b already carry a: no extra a rows
    assert [] not in few.labels and sample_per_label(split, 3, seed=0).texts == few.texts
    with pytest.raises(tunesmith.TunesmithError, match="label\\(s\\) \\['b', 'c'\\] have fewer rows"):
        sample_per_label(split, 6, seed=0)
