"""Continual learning beyond single labels: a multi-label model that meets new labels, and an entity tagger that
meets new entity types (class-incremental), each with its matrix, versions, update and predictor."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesmith
from tests.test_multilabel import TOPICS
from tunesmith.cli import app

runner = CliRunner()
TRAIN = {"epochs": 6, "lr": 5e-3, "batch_size": 16, "warmup_ratio": 0.0, "early_stopping": {"patience": None}}
METHOD = {"name": "continual", "freeze_embeddings": False, "freeze_layers": 0}


def topic_rows(topics: list[str], n: int, seed: int) -> pd.DataFrame:
    """Texts mentioning zero to two of `topics` (their words), labelled with those topics."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        chosen = rng.sample(topics, rng.choice([0, 1, 1, 2]))
        words = [rng.choice(TOPICS[t]) for t in chosen] + rng.sample(
            ["the", "a", "and", "is", "it", "not"], 5 - len(chosen)
        )
        rng.shuffle(words)
        out.append({"text": " ".join(words), "labels": "|".join(sorted(chosen))})
    return pd.DataFrame(out)


def multilabel_files(folder) -> dict:
    files = {}
    for name, topics, seed in (("reviews", ["praise", "complaint"], 0), ("products", ["praise", "item"], 10)):
        for split, n, offset in (("train", 200, 0), ("validation", 50, 1)):
            files[(name, split)] = folder / f"{name}_{split}.csv"
            topic_rows(topics, n, seed + offset).to_csv(files[(name, split)], index=False)
    return files


def test_multi_label_continual_grows_labels_keeps_thresholds_and_updates(tmp_path):
    files = multilabel_files(tmp_path)
    exp = lambda name: {
        "name": name,
        "data": {"train": str(files[(name, "train")]), "validation": str(files[(name, "validation")])},
    }  # noqa: E731
    recipe = {
        "model": "tiny-bert",
        # growth, thresholds and updates are checked here; the head's start (a probe on the tiny random body's
        # features by default) has its own test below
        "method": {**METHOD, "strategy": ["replay", "lwf"], "head_init": "random"},
        "train": TRAIN,
        "data": {"label_column": "labels", "label_separator": "|"},  # shared by every experience
        "experiences": [exp("reviews")],
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = result.metrics
    assert (
        m["task"] == "multi_label" and m["labels"] == ["complaint", "praise"] and m["continual"]["metric"] == "f1_micro"
    )
    assert m["continual"]["matrix"][0][0] > 0.8 and "f1_micro" in m["tuned"]
    _base_beside_tuned(m, result.run_dir, ["great product, poor delivery"])
    done = runner.invoke(
        app,
        [
            "update",
            str(result.run_dir),
            "--data",
            str(files[("products", "train")]),
            "--validation",
            str(files[("products", "validation")]),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "average f1_micro" in done.output
    m = json.loads((result.run_dir / "metrics.json").read_text())
    assert m["labels"] == ["complaint", "praise", "item"] and len(m["continual"]["matrix"]) == 2
    assert m["continual"]["matrix"][1][1] > 0.7  # it learned the new label
    assert m["continual"]["matrix"][1][0] > 0.6  # and still tags complaints and praise on old data
    thresholds = json.loads((result.run_dir / "model" / "thresholds.json").read_text())
    assert thresholds["labels"] == m["labels"] and len(thresholds["per_label"]) == 3 and thresholds["separator"] == "|"
    predictor = tunesmith.Predictor.load(result.run_dir)
    assert predictor.classes_ == ["complaint", "praise", "item"]
    sets = predictor.predict(["the great and the product", "bad it is not a"])
    assert sets[0] == ["praise", "item"] and "complaint" in sets[1]
    # the tiny model's thresholds on one text move with the seed's random stream; its ranking of the texts does not
    probs = predictor.predict_proba(["the great and the product", "bad it is not a"])
    item = predictor.classes_.index("item")
    assert probs[0][item] > probs[1][item]
    assert "f1_micro matrix" in (result.run_dir / "report.md").read_text()


def tagged(types: list[str], n: int, seed: int) -> list[dict]:
    """Sentences holding ITEM ("movie", "product") and PRAISE ("good great") mentions; only `types` are annotated,
    the others are tagged O, as data labelled for one entity type is."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            roll = rng.random()
            if roll < 0.2:
                words += [rng.choice(["movie", "product"])]
                tags += ["B-ITEM" if "ITEM" in types else "O"]
            elif roll < 0.3:
                words += ["good", "great"]
                tags += ["B-PRAISE", "I-PRAISE"] if "PRAISE" in types else ["O", "O"]
            else:
                words.append(rng.choice(["the", "a", "and", "is", "it", "not", "bad"]))
                tags.append("O")
        out.append({"tokens": words, "tags": tags})
    return out


def tagged_experiences(folder, specs, n_train: int, n_validation: int) -> list[dict]:
    """Experiences (name, annotated types, seed) written as train/validation JSONL files under `folder`."""
    exps = []
    for name, types, seed in specs:
        data = {}
        for split, n, offset in (("train", n_train, 0), ("validation", n_validation, 1)):
            path = folder / f"{name}_{split}.jsonl"
            path.write_text("\n".join(json.dumps(r) for r in tagged(types, n, seed + offset)))
            data[split] = str(path)
        exps.append({"name": name, "data": data})
    return exps


def test_entity_tagger_learns_new_types_without_forgetting_the_old(tmp_path):
    exps = tagged_experiences(tmp_path, (("items", ["ITEM"], 0), ("praise", ["PRAISE"], 10)), 200, 50)
    recipe = {
        "task": "token_classification",
        "model": "tiny-bert",
        "method": {**METHOD, "strategy": "replay", "replay_ratio": 1.0},
        "train": TRAIN,
        "experiences": exps,
    }
    result = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = result.metrics
    c = m["continual"]
    assert m["task"] == "token_classification" and c["metric"] == "f1"
    assert m["labels"] == ["O", "B-ITEM", "B-PRAISE", "I-PRAISE"]
    assert c["matrix"][0][0] > 0.9 and c["matrix"][0][1] == 0.0  # PRAISE unknown after the first experience
    assert c["matrix"][1][1] > 0.8  # learned the new type
    assert c["matrix"][1][0] > 0.8  # replay kept ITEM, though the new data tags items O
    _base_beside_tuned(m, result.run_dir, ["the movie is good great"])
    naive = tunesmith.run({**recipe, "method": {**METHOD, "strategy": "naive"}}, output_dir=tmp_path / "naive").metrics[
        "continual"
    ]
    assert naive["matrix"][1][0] < c["matrix"][1][0] - 0.3  # trained on items tagged O, plain fine-tuning forgets them
    found = tunesmith.Predictor.load(result.run_dir).predict(["the movie is good great"])[0]
    assert [(e["type"], e["text"]) for e in found] == [("ITEM", "movie"), ("PRAISE", "good great")]
    with pytest.raises(tunesmith.TunesmithError, match="lwf is for classification"):
        tunesmith.run({**recipe, "method": {**METHOD, "strategy": ["replay", "lwf"]}}, output_dir=tmp_path / "lwf")
    assert not (tmp_path / "lwf").exists()  # refused before anything is written


def test_regression_continual_keeps_the_scale_learns_a_shifted_score_and_serves_its_units(tmp_path):
    """A score on the first experience; the second shifts it for a new phrasing. The saved model speaks the labels'
    units at every version, and an update starts from a saved version without losing its scale."""
    from tests.test_regression import score_rows

    paths = {}
    for name, n, seed in (("first", 200, 0), ("first_val", 40, 1)):
        paths[name] = tmp_path / f"{name}.csv"
        score_rows(n, seed).to_csv(paths[name], index=False)
    for name, n, seed in (("second", 200, 2), ("second_val", 40, 3)):
        rows = score_rows(n, seed)
        rows["text"] = rows["text"].str.replace("good", "great")  # new words for the same score
        rows.to_csv(tmp_path / f"{name}.csv", index=False)
        paths[name] = tmp_path / f"{name}.csv"
    recipe = {
        "task": "regression",
        "model": "tiny-bert",
        "method": {**METHOD, "strategy": ["replay", "ewc"], "ewc_lambda": 10.0},
        "train": {**TRAIN, "lr": 3e-3},
        "experiences": [
            {"name": "first", "data": {"train": str(paths["first"]), "validation": str(paths["first_val"])}}
        ],
    }
    run = tunesmith.run(recipe, output_dir=tmp_path / "run")
    m = run.metrics
    assert m["task"] == "regression" and m["continual"]["metric"] == "r2" and m["labels"] == ["value"]
    assert m["continual"]["matrix"][0][0] > 0.8 and m["tuned"]["spearman"] > 0.85
    _base_beside_tuned(m, run.run_dir, ["good good the movie"])
    predictor = tunesmith.Predictor.load(run.run_dir)
    low, high = predictor.predict(["bad bad bad bad the movie", "good good good good the movie"])
    assert 9 < low < 11.5 and 19 < high < 21.5  # labels' units (10 + 2.5 k), not standardised outputs
    done = runner.invoke(
        app, ["update", str(run.run_dir), "--data", str(paths["second"]), "--validation", str(paths["second_val"])]
    )
    assert done.exit_code == 0, done.output
    m = json.loads((run.run_dir / "metrics.json").read_text())
    assert len(m["continual"]["matrix"]) == 2 and m["continual"]["matrix"][1][1] > 0.7  # learned "great"
    assert m["continual"]["matrix"][1][0] > 0.7  # and still scores "good"
    low, high = tunesmith.Predictor.load(run.run_dir).predict(
        ["bad bad bad bad the movie", "great great great great a movie"]
    )
    assert 9 < low < 11.5 and 19 < high < 21.5
    assert (run.run_dir / "versions" / "v2" / "ewc.safetensors").is_file()


@pytest.mark.parametrize(
    ("metric", "shown"), [("f1", "f1 matrix"), ("r2", "r2 matrix"), ("accuracy", "accuracy matrix")]
)
def test_the_printed_matrix_names_the_metric_it_holds(metric, shown):
    from tunesmith.cli import tables

    continual = {
        "experiences": ["a", "b"],
        "matrix": [[0.5, None], [0.4, 0.6]],
        "average_accuracy": 0.5,
        "bwt": -0.1,
        "metric": metric,
        "strategy": ["replay"],
    }
    with tables.out.capture() as captured:
        tables._print_matrix({"model": "m", "continual": continual})
    text = captured.get()
    assert shown in text and "0.4000" in text and "BWT" not in text  # the run's log says the average and BWT once
    assert metric == "accuracy" or "accuracy" not in text


@pytest.mark.parametrize("head_init", ["probe", "random"])
def test_the_first_experiences_tag_head_starts_as_head_init_says(tmp_path, monkeypatch, head_init):
    """A continual run's first head is new, as a supervised run's is: method.head_init applies to it (the heads
    that grow later keep their learned rows)."""
    from tunesmith.models import loading as module

    started = []
    real = module.fill_head
    monkeypatch.setattr(module, "fill_head", lambda model, w, b: started.append(w.shape) or real(model, w, b))
    both = ["ITEM", "PRAISE"]
    exps = tagged_experiences(tmp_path, (("both", both, 0), ("more", both, 20)), 120, 30)
    recipe = {
        "task": "token_classification",
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "head_init": head_init},
        "train": {**TRAIN, "epochs": 1},
        "experiences": exps,
    }
    m = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics
    assert len(m["continual"]["matrix"]) == 2
    assert started == ([(4, 32)] if head_init == "probe" else [])  # once, the first head: 4 tags x hidden size


def test_the_first_experiences_class_head_starts_from_the_probe_when_asked(tmp_path, monkeypatch):
    from tests.conftest import sentiment_rows
    from tunesmith.methods import head_init as module

    fitted = []
    real = module.init_head_from_probe
    monkeypatch.setattr(module, "init_head_from_probe", lambda *a, **k: fitted.append(a[3]) or real(*a, **k))
    exps = []
    for name, seed in (("first", 0), ("second", 5)):
        data = {}
        for split, n, offset in (("train", 80, 0), ("validation", 30, 1)):
            path = tmp_path / f"{name}_{split}.csv"
            sentiment_rows(n, seed + offset).to_csv(path, index=False)
            data[split] = str(path)
        exps.append({"name": name, "data": data})
    recipe = {
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "head_init": "probe"},
        "train": {**TRAIN, "epochs": 1},
        "experiences": exps,
    }
    tunesmith.run(recipe, output_dir=tmp_path / "run")
    assert fitted == [2]  # the first experience's two classes, once


@pytest.mark.parametrize(("head_init", "calls"), [("auto", 1), ("random", 0)])
def test_the_first_experiences_label_set_head_starts_as_a_supervised_one_does(tmp_path, monkeypatch, head_init, calls):
    from tunesmith.methods import head_init as module

    fitted = []
    real = module.init_multilabel_head
    monkeypatch.setattr(module, "init_multilabel_head", lambda *a, **k: fitted.append(a[2].shape) or real(*a, **k))
    files = multilabel_files(tmp_path)
    recipe = {
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "head_init": head_init},
        "train": {**TRAIN, "epochs": 1},
        "data": {"label_column": "labels", "label_separator": "|"},
        "experiences": [
            {"name": n, "data": {"train": str(files[(n, "train")]), "validation": str(files[(n, "validation")])}}
            for n in ("reviews", "products")
        ],
    }
    tunesmith.run(recipe, output_dir=tmp_path / "run")
    assert len(fitted) == calls and all(shape == (200, 2) for shape in fitted)  # the first experience's 2 labels


def test_a_continual_entity_run_trains_long_texts_as_windows(tmp_path):
    """Entities past max_length in a continual experience's training texts are learned too (24 filler words first):
    the experience trains on overlapping windows of words, as a supervised run does."""
    rng = random.Random(3)
    (exp,) = tagged_experiences(tmp_path, (("items", ["ITEM"], 0),), 200, 50)
    rows = [json.loads(x) for x in Path(exp["data"]["train"]).read_text().splitlines()]
    long_rows = []
    for row in rows:
        filler = [rng.choice(["the", "a", "and", "is", "it"]) for _ in range(24)]
        long_rows.append(json.dumps({"tokens": filler + row["tokens"], "tags": ["O"] * 24 + row["tags"]}))
    Path(exp["data"]["train"]).write_text("\n".join(long_rows))
    recipe = {
        "task": "token_classification",
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "strategy": "naive"},
        "train": {**TRAIN, "max_length": 20},
        "experiences": [exp],
    }
    c = tunesmith.run(recipe, output_dir=tmp_path / "run").metrics["continual"]
    assert c["matrix"][0][0] > 0.8  # ITEM learned from words a single cut read never saw


def _base_beside_tuned(metrics: dict, run_dir, texts: list[str]) -> None:
    """A continual run reports the base model (a probe on its frozen embeddings) on the sets the tuned model is
    scored on, with the same measures, and keeps the probe so that the base model answers again."""
    from tunesmith.predict import load_base

    assert set(metrics["tuned"]) <= set(metrics["base"]) and metrics["base"]["kind"]
    assert metrics["base"] != {**metrics["tuned"], "kind": metrics["base"]["kind"]}
    assert len(load_base(run_dir).predict(texts)) == len(texts)
