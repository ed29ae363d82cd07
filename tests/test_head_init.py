"""LP-FT: a new classification head starts as the logistic regression fitted on the body's features."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tests.conftest import sentiment_rows
from tunesmith.engine.batching import tokenize
from tunesmith.engine.metrics import forward_batches
from tunesmith.methods.head_init import head_features, init_head_from_probe, output_layers
from tunesmith.models.loading import head_is_fresh, load_classifier, load_tokenizer, resolve_weights


def _logits(model, rows, pad_id) -> np.ndarray:
    return forward_batches(model, rows, 16, pad_id, "fp32", lambda out, _b: out.logits.float().numpy())


def _as_decision(logits: np.ndarray) -> np.ndarray:
    """The head's logits in scikit-learn's decision_function form (one column, the log-odds, for two classes)."""
    return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits


def _spread(model, rows, pad_id):
    """The random tiny body gives nearly the same [CLS] vector for every row (spread ~0.003); a linear
    pooler that standardises it gives features, and so probe scores, that differ from row to row."""
    pooler = model.bert.pooler
    hidden = model.config.hidden_size
    with torch.no_grad():
        pooler.activation = torch.nn.Identity()
        pooler.dense.weight.copy_(torch.eye(hidden))
        pooler.dense.bias.zero_()
        cls = head_features(model, output_layers(model, model.num_labels), rows, 16, pad_id, "fp32")
        mean, std = torch.as_tensor(cls.mean(0)), torch.as_tensor(cls.std(0) + 1e-6)
        pooler.dense.weight.copy_(torch.diag(1 / std))
        pooler.dense.bias.copy_(-mean / std)
    return model


def _separable_labels(features: np.ndarray, k: int) -> list[int]:
    """Labels the features can tell apart (the random body knows nothing of the toy words), so the probe
    scores rows far from 0 and a head that is not the probe cannot match it by chance."""
    edges = np.quantile(features[:, 0], np.linspace(0, 1, k + 1)[1:-1])
    return np.digitize(features[:, 0], edges).tolist()


def _rows(labels: list[str], n: int = 60):
    weights = resolve_weights("tiny-bert")
    tokenizer = load_tokenizer(weights)
    frame = sentiment_rows(n, 3)
    if len(labels) == 3:  # a third class: every third row
        frame.loc[frame.index % 3 == 2, "label"] = "neutral"
    rows, _ = tokenize(tokenizer, frame.text.tolist(), None, 32)
    ids = [labels.index(y) for y in frame.label]
    return weights, tokenizer, rows, ids


@pytest.mark.parametrize("labels", [["negative", "positive"], ["negative", "neutral", "positive"]])
def test_the_started_head_predicts_what_the_probe_predicts(labels):
    torch.manual_seed(0)
    weights, tokenizer, rows, _ = _rows(labels)
    model = _spread(load_classifier(weights, labels), rows, tokenizer.pad_token_id)
    layers = output_layers(model, len(labels))
    features = head_features(model, layers, rows, 16, tokenizer.pad_token_id, "fp32")
    ids = _separable_labels(features, len(labels))
    probe = LogisticRegression(max_iter=2000, random_state=7).fit(features, ids)

    fit = init_head_from_probe(model, rows, ids, len(labels), 16, tokenizer.pad_token_id, "fp32", seed=7)
    assert model.training  # handed back ready to train
    got = _as_decision(_logits(model, rows, tokenizer.pad_token_id))
    assert fit is not None and 0 < fit <= 1
    expected = probe.decision_function(features)
    assert np.abs(expected).mean() > 0.5  # scores with a spread, not all ~0
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)  # the probe's scores, so the probe's start


def test_a_random_head_does_not_match_the_probe():
    """The check above can fail: a head left random gives other scores."""
    labels = ["negative", "positive"]
    torch.manual_seed(0)
    weights, tokenizer, rows, _ = _rows(labels)
    model = _spread(load_classifier(weights, labels), rows, tokenizer.pad_token_id)
    features = head_features(model, output_layers(model, 2), rows, 16, tokenizer.pad_token_id, "fp32")
    ids = _separable_labels(features, 2)
    probe = LogisticRegression(max_iter=2000, random_state=7).fit(features, ids)
    got = _as_decision(_logits(model, rows, tokenizer.pad_token_id))
    assert not np.allclose(got, probe.decision_function(features), rtol=1e-3, atol=1e-4)


def test_a_decoder_head_scoring_every_position_is_left_alone():
    weights = resolve_weights("tiny-llama")
    tokenizer = load_tokenizer(weights)
    rows, _ = tokenize(tokenizer, ["good movie", "bad movie", "great film", "terrible film"], None, 16)
    model = load_classifier(weights, ["negative", "positive"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    assert init_head_from_probe(model, rows, [1, 0, 1, 0], 2, 4, pad, "fp32", seed=0) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_head_saved_for_the_same_labels_is_kept(tmp_path):
    labels = ["negative", "positive"]
    load_classifier(resolve_weights("tiny-bert"), labels).save_pretrained(tmp_path)
    assert not head_is_fresh(str(tmp_path), labels)
    assert head_is_fresh(str(tmp_path), ["negative", "neutral", "positive"])
    assert head_is_fresh(resolve_weights("tiny-bert"), labels)  # a bare body always gets a new head


def test_recipes_run_with_either_start(toy_data, tmp_path):
    import tunesmith

    accuracy = {}
    for init in ("probe", "random"):
        recipe = {**toy_data["recipe"], "method": {**toy_data["recipe"]["method"], "head_init": init}}
        accuracy[init] = tunesmith.run(recipe, output_dir=tmp_path / init).metrics["tuned"]["accuracy"]
    assert accuracy["probe"] >= 0.9 and accuracy["random"] >= 0.9


def test_auto_starts_from_the_probe_for_four_classes_with_few_steps_each(toy_data, tmp_path):
    import pandas as pd

    import tunesmith

    spent = {}
    for classes in (2, 4):
        recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
        if classes == 4:  # split each class in two by the row number's parity: a learnable 4-class task
            data = {}
            for split, path in toy_data["paths"].items():
                frame = pd.read_csv(path)
                frame["label"] = frame.label + "_" + (frame.index // 2 % 2).astype(str)
                frame.to_csv(tmp_path / f"four_{split}.csv", index=False)
                data[split] = str(tmp_path / f"four_{split}.csv")
            recipe["data"] = data
        spent[classes] = tunesmith.run(recipe, output_dir=tmp_path / f"auto{classes}").metrics["train"]["head_init_s"]
    assert spent[2] == 0.0 and spent[4] > 0.0


def test_auto_probes_only_many_classes_with_few_steps_each():
    """The rule read off benchmarks/head_init.py: 4+ classes and under 25 optimizer steps per class."""
    from types import SimpleNamespace

    from tunesmith.methods.head_init import probe_wanted

    cfg = SimpleNamespace(batch_size=16, grad_accum=1, epochs=4)  # what auto picks for 1,000 rows: 252 steps
    assert probe_wanted("auto", 35, 1000, cfg)  # ~7 steps per clause type
    assert not probe_wanted("auto", 5, 1000, cfg)  # ~50 steps per class: a random head catches up
    assert probe_wanted(
        "auto", 5, 1000, SimpleNamespace(batch_size=32, grad_accum=2, epochs=1)
    )  # 16 steps: 3 per class
    assert not probe_wanted(
        "auto", 3, 200, SimpleNamespace(batch_size=32, grad_accum=1, epochs=1)
    )  # 2-3 classes: never
    assert probe_wanted("probe", 2, 10_000, cfg) and not probe_wanted("random", 35, 10, cfg)


def _tag_rows(n: int = 80):
    """Toy entity sentences as the tag head's rows (tiny body), with each word's first piece and its tags."""
    import random

    from tests.test_token_classification import sentence
    from tunesmith.tasks import token_classification as tc

    rng = random.Random(3)
    sentences = [sentence(rng) for _ in range(n)]
    labels = ["O", "B-ITEM", "B-PRAISE", "I-PRAISE"]
    weights = resolve_weights("tiny-bert")
    tokenizer = load_tokenizer(weights)
    rows, firsts, _ = tc.encode(tokenizer, [w for w, _ in sentences], [t for _, t in sentences], labels, 32)
    return weights, tokenizer, rows, firsts, [t for _, t in sentences], labels


def test_a_started_tag_head_gives_the_token_probes_probabilities():
    from tunesmith.methods.token_classification import load_token_model
    from tunesmith.models.loading import fill_head
    from tunesmith.recipe import TrainSection
    from tunesmith.tasks import token_classification as tc

    torch.manual_seed(0)
    weights, tokenizer, rows, firsts, tags, labels = _tag_rows()
    model = load_token_model(weights, labels, TrainSection())
    pad = tokenizer.pad_token_id
    features = tc.word_features(model.base_model, rows, firsts, 16, pad, "fp32")
    probe = tc.fit_probe(model.base_model, rows, firsts, tags, labels, 16, pad, "fp32", seed=0)
    before = np.concatenate(tc.word_scores(model, rows, firsts, 16, pad, "fp32"))
    expected = probe.predict_proba(np.concatenate(features))
    assert not np.allclose(before, expected, atol=1e-3)  # a random head is not the probe

    assert fill_head(model, *tc.probe_head(probe, len(labels)))
    got = np.concatenate(tc.word_scores(model, rows, firsts, 16, pad, "fp32"))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("seen", [[0, 2], [0, 1, 3]])
def test_a_tag_the_probe_never_saw_starts_unpredicted(seen):
    """scikit-learn's probe holds only the tags in its sample (one row for two of them): the head gets a row per
    tag, the probe's probabilities over the tags it saw, and ~0 for the rest."""
    from tunesmith.tasks.token_classification import probe_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = np.asarray(seen)[np.argmax(x[:, : len(seen)], axis=1)]
    probe = LogisticRegression(max_iter=1000).fit(x, y)
    weight, bias = probe_head(probe, 4)
    logits = x @ weight.T + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs[:, seen], probe.predict_proba(x), atol=2e-4)  # the unseen tags hold ~e-10 of it
    unseen = [k for k in range(4) if k not in seen]
    assert probs[:, unseen].max() < 1e-3


@pytest.mark.parametrize(
    ("head_init", "baseline", "started"),
    [("probe", "linear_probe", True), ("probe", "none", True), ("random", "linear_probe", False)],
)
def test_tag_runs_start_their_head_as_the_recipe_says(tmp_path, head_init, baseline, started):
    """With no base line to take the probe from, it is fitted on the model's own body."""
    import tunesmith
    from tests.test_token_classification import recipe, write_sets

    spec = recipe(write_sets(tmp_path))
    spec["method"] = {**spec["method"], "head_init": head_init}
    spec["train"] = {**spec["train"], "epochs": 1}
    spec["eval"] = {"baseline": baseline}
    m = tunesmith.run(spec, output_dir=tmp_path / "run").metrics
    assert (m["train"]["head_init_s"] > 0) == started
    said = "started as the base line's per-token probe" in (tmp_path / "run" / "report.md").read_text()
    assert said == started and (m["train"].get("head_start") == "probe") == started
    assert m["tuned"]["f1"] >= 0  # the run finished and scored


def test_a_tag_head_saved_for_the_same_tags_is_kept(tmp_path):
    from tunesmith.methods.token_classification import load_token_model
    from tunesmith.models.loading import saved_tags
    from tunesmith.recipe import TrainSection

    tags = ["O", "B-ITEM", "I-ITEM"]
    load_token_model(resolve_weights("tiny-bert"), tags, TrainSection()).save_pretrained(tmp_path)
    assert saved_tags(str(tmp_path)) == tags
    assert saved_tags(resolve_weights("tiny-bert")) is None


def test_auto_probes_tag_heads_only_with_very_few_steps_per_tag():
    """Every step trains each tag on many words: a random tag head catches up by ~15 steps per tag, where a
    sentence head needs 25 (benchmarks/head_init.py --task token_classification)."""
    from types import SimpleNamespace

    from tunesmith.methods.head_init import PROBE_BELOW_STEPS_PER_TAG, probe_wanted

    two_epochs = SimpleNamespace(batch_size=16, grad_accum=1, epochs=2)  # 800 sentences: 100 steps, 13 tags
    assert probe_wanted("auto", 13, 800, two_epochs, PROBE_BELOW_STEPS_PER_TAG)
    auto = SimpleNamespace(batch_size=16, grad_accum=1, epochs=4)  # 1,000 sentences: 252 steps, ~19 per tag
    assert not probe_wanted("auto", 13, 1000, auto, PROBE_BELOW_STEPS_PER_TAG)
    assert probe_wanted("auto", 13, 1000, auto)  # where the sentence rule would have started from the probe


def test_a_regression_head_starts_as_the_ridge_on_its_features():
    """method.head_init: probe on a regression run: the one-output head answers what a ridge regression fitted on
    the features it sees answers (a random head does not)."""
    from sklearn.linear_model import RidgeCV
    from transformers import AutoModelForSequenceClassification

    from tunesmith.methods.head_init import init_regression_head

    torch.manual_seed(0)
    weights, tokenizer, rows, _ = _rows(["negative", "positive"])
    model = AutoModelForSequenceClassification.from_pretrained(weights, num_labels=1, problem_type="regression")
    model = _spread(model, rows, tokenizer.pad_token_id)
    features = head_features(model, output_layers(model, 1), rows, 16, tokenizer.pad_token_id, "fp32")
    targets = features[:, 0] * 2.0 + features[:, 1] - 0.5  # scores the features carry
    expected = RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0)).fit(features, targets).predict(features)
    before = _logits(model, rows, tokenizer.pad_token_id)[:, 0]
    assert not np.allclose(before, expected, atol=1e-2)
    r2 = init_regression_head(model, rows, targets, 16, tokenizer.pad_token_id, "fp32", seed=7)
    assert model.training and r2 is not None and r2 > 0.9
    np.testing.assert_allclose(_logits(model, rows, tokenizer.pad_token_id)[:, 0], expected, rtol=1e-3, atol=1e-3)
