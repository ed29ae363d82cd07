"""Data that is not a file yet: `data.hub` (through a local mirror, through `datasets`, and offline), and in-memory
tables given to `tunesmith.run`; each becomes files the readers check as they check a user's own."""

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import tunesmith
from tests.conftest import sentiment_rows
from tunesmith.cli import app
from tunesmith.errors import TunesmithError

runner = CliRunner()
TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 16, "warmup_ratio": 0.0}


def _recipe(data: dict) -> dict:
    return {"model": "tiny-bert", "eval": {"baseline": "none"}, "train": TRAIN, "data": data}


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    folder = tmp_path / "mirror" / "acme" / "reviews"
    folder.mkdir(parents=True)
    sentiment_rows(120, 0).to_csv(folder / "train.csv", index=False)
    sentiment_rows(30, 1).to_json(folder / "dev.jsonl", orient="records", lines=True)
    sentiment_rows(30, 2).to_parquet(folder / "test.parquet")
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(tmp_path / "mirror"))
    return folder


def test_a_hub_id_reads_its_splits_from_the_mirror_and_the_run_saves_plain_files(mirror, tmp_path):
    result = tunesmith.run(_recipe({"hub": "acme/reviews", "split_map": {"validation": "dev"}}), tmp_path / "run")
    assert result.metrics["eval_set"] == "test" and result.metrics["eval_size"] == 30
    saved = yaml.safe_load((result.run_dir / "recipe.yaml").read_text())["data"]
    assert saved["train"] == str(mirror / "train.csv") and saved["validation"] == str(mirror / "dev.jsonl")
    assert saved["test"] == str(mirror / "test.parquet") and saved["source"] == "hub:acme/reviews"
    assert "hub" not in saved or saved["hub"] is None  # a resumed or updated run reads the files, not the Hub


def test_the_mirror_says_where_it_looked_and_what_a_folder_holds(mirror, tmp_path):
    with pytest.raises(TunesmithError, match="not in the mirror .*acme/other"):
        tunesmith.run(_recipe({"hub": "acme/other"}), tmp_path / "run")
    (mirror / "train.csv").rename(mirror / "training.csv")
    with pytest.raises(TunesmithError, match="has no training split file .*it holds: dev.jsonl, test.parquet"):
        tunesmith.run(_recipe({"hub": "acme/reviews"}), tmp_path / "run")


def test_data_check_reads_a_hub_dataset_through_data_root(mirror, tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("TUNESMITH_DATA_ROOT")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe({"hub": "acme/reviews"})))
    done = runner.invoke(
        app, ["data", "check", str(path), "--data-root", str(tmp_path / "mirror"), "-o", str(tmp_path / "check")]
    )
    assert done.exit_code == 0, done.output
    report = json.dumps(json.loads((tmp_path / "check" / "data_check.json").read_text()))
    assert str(mirror / "train.csv") in report and str(mirror / "test.parquet") in report


def test_a_hub_dataset_goes_through_datasets_and_is_written_once_as_parquet(tmp_path, monkeypatch):
    import datasets

    calls = []

    def load_dataset(name, config, revision=None):  # the Hub's answer, as datasets gives it
        calls.append((name, config, revision))
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_pandas(sentiment_rows(120, 0)),
                "validation": datasets.Dataset.from_pandas(sentiment_rows(30, 1)),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    recipe = _recipe({"hub": "acme/reviews", "config": "en"})
    first = tunesmith.run(recipe, tmp_path / "a")
    second = tunesmith.run(recipe, tmp_path / "b")
    assert calls == [("acme/reviews", "en", None)] * 2
    files = [yaml.safe_load((r.run_dir / "recipe.yaml").read_text())["data"] for r in (first, second)]
    assert files[0]["train"] == files[1]["train"] and files[0]["train"].endswith(".parquet")
    assert files[0]["test"] is None and first.metrics["eval_set"] == "validation"
    assert pd.read_parquet(files[0]["train"]).shape[0] == 120 and files[0]["source"] == "hub:acme/reviews (en)"


def test_offline_a_hub_id_fails_with_what_to_do(tmp_path):
    # HF_HUB_OFFLINE is set for the whole suite (conftest): the Hub is never asked
    with pytest.raises(TunesmithError, match="could not be loaded .*TUNESMITH_DATA_ROOT"):
        tunesmith.run(_recipe({"hub": "acme/reviews"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hub": "acme/reviews", "train": "x.csv"}, "give data.train .* or data.hub"),
        ({"train": "x.csv", "config": "en"}, "go with data.hub"),
        ({"hub": "acme/reviews", "test": "x.csv"}, "name them in data.split_map"),
        ({"hub": "../etc"}, "data.hub"),
        ({"hub": "acme/.."}, "data.hub"),
        ({"hub": "acme/reviews", "split_map": {"dev": "validation"}}, "split_map"),
    ],
)
def test_bad_hub_sections_are_schema_errors(data, message, tmp_path):
    with pytest.raises(TunesmithError, match=message):
        tunesmith.run(_recipe(data), tmp_path / "run")


def test_in_memory_tables_train_like_files_and_the_same_table_is_the_same_file(tmp_path):
    import datasets

    recipe = _recipe({})
    recipe.pop("data")
    train, test = sentiment_rows(120, 0), sentiment_rows(30, 2)
    a = tunesmith.run(recipe, tmp_path / "a", train=train, test=datasets.Dataset.from_pandas(test))
    b = tunesmith.run(recipe, tmp_path / "b", train=train.to_dict("records"), test=test)
    saved = [yaml.safe_load((r.run_dir / "recipe.yaml").read_text())["data"] for r in (a, b)]
    assert saved[0]["train"] == saved[1]["train"] and saved[0]["source"] == "in-memory tables"
    assert a.metrics["eval_set"] == "test" and a.metrics["eval_size"] == 30
    with pytest.raises(TunesmithError, match="train: the table has no rows"):
        tunesmith.run(recipe, tmp_path / "c", train=train.iloc[:0])
    with pytest.raises(TunesmithError, match="give a pandas DataFrame"):
        tunesmith.run(recipe, tmp_path / "d", train="train.csv")
    # what the readers check still holds: a table without the label column is refused by name
    with pytest.raises(TunesmithError, match="label"):
        tunesmith.run(recipe, tmp_path / "e", train=train.drop(columns=["label"]))


SHIPPED = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "recipes" / "financial_sentiment.yaml"
PHRASEBANK = Path(__file__).resolve().parents[2] / "shared" / "data" / "financial_phrasebank_50agree"
SIZES = {"train": 150, "validation": 40, "test": 40}


def _hub_recipe(tmp_path) -> Path:
    """The shipped recipe as a user points it at a Hub id instead of files, cut down to a tiny model."""
    recipe = yaml.safe_load(SHIPPED.read_text())
    recipe["data"] = {"hub": "acme/financial-news"}
    recipe["model"] = {"name": "tiny-bert"}
    recipe["train"].update(epochs=1, max_length=64)
    recipe["eval"] = {"baseline": "none"}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_shipped_recipe_runs_from_a_datasets_saved_copy_and_from_a_file_mirror(tmp_path, monkeypatch):
    """Offline, as a user carries a Hub dataset over: `load_dataset(id).save_to_disk(DIR)` where the Hub is
    reachable, then `--data-root` here; or the same splits as plain files. Both read the same rows."""
    import datasets

    if not PHRASEBANK.is_dir():
        pytest.skip(f"shared benchmark data not present: {PHRASEBANK}")
    splits = {role: pd.read_csv(PHRASEBANK / f"{role}.csv").head(n) for role, n in SIZES.items()}
    saved, files = tmp_path / "saved" / "acme" / "financial-news", tmp_path / "files" / "acme" / "financial-news"
    datasets.DatasetDict({r: datasets.Dataset.from_pandas(f) for r, f in splits.items()}).save_to_disk(str(saved))
    files.mkdir(parents=True)
    for role, frame in splits.items():
        frame.to_csv(files / f"{role}.csv", index=False)
    path, runs = _hub_recipe(tmp_path), {}
    for name in ("saved", "files"):
        monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(tmp_path / name))
        runs[name] = tunesmith.run(tunesmith.recipe.load_recipe(path), tmp_path / f"run-{name}")
    data = {n: yaml.safe_load((r.run_dir / "recipe.yaml").read_text())["data"] for n, r in runs.items()}
    assert data["files"]["train"] == str(files / "train.csv")
    assert data["saved"]["train"].endswith(".parquet") and data["saved"]["source"] == "hub:acme/financial-news"
    assert all(pd.read_parquet(data["saved"][r]).equals(splits[r]) for r in SIZES)  # the saved copy's rows, whole
    for run in runs.values():
        assert run.metrics["train"]["train_size"] == 150 and run.metrics["eval_size"] == 40
        assert sorted(run.metrics["labels"]) == ["negative", "neutral", "positive"]
    assert runs["saved"].metrics["tuned"]["accuracy"] == runs["files"].metrics["tuned"]["accuracy"]


def test_a_damaged_or_hostile_saved_copy_is_refused_or_kept_inside_the_cache(tmp_path, monkeypatch):
    import json

    import datasets

    copy = tmp_path / "mirror" / "acme" / "financial-news"
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(sentiment_rows(120, 0))}).save_to_disk(str(copy))
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(tmp_path / "mirror"))
    state = copy / "train" / "state.json"
    fields = json.loads(state.read_text())
    state.write_text(json.dumps({**fields, "_fingerprint": "../../../../escaped"}))  # another's text as a name
    result = tunesmith.run(tunesmith.recipe.load_recipe(_hub_recipe(tmp_path)), tmp_path / "run")
    written = Path(yaml.safe_load((result.run_dir / "recipe.yaml").read_text())["data"]["train"]).resolve()
    assert written.is_relative_to(Path(os.environ["TUNESMITH_CACHE"]).resolve())
    assert not list(tmp_path.rglob("escaped*")) and pd.read_parquet(written).shape[0] == 120
    state.write_text("{not json")
    with pytest.raises(TunesmithError, match="looks like a copy saved by datasets but does not load"):
        tunesmith.run(tunesmith.recipe.load_recipe(_hub_recipe(tmp_path)), tmp_path / "run2")
    assert not (tmp_path / "run2").exists()


def _class_label_hub(monkeypatch, calls=None):
    """A Hub dataset as `datasets` gives it: labels stored as ClassLabel numbers, the test split's hidden (-1)."""
    import datasets

    names = ["negative", "positive"]
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})

    def split(seed, hidden=False):
        rows = sentiment_rows(120 if seed == 0 else 30, seed)
        labels = [-1] * len(rows) if hidden else [names.index(x) for x in rows.label]
        return datasets.Dataset.from_dict({"sentence": rows.text.tolist(), "label": labels}, features=features)

    def load_dataset(name, config=None, revision=None):
        if calls is not None:
            calls.append((name, config, revision))
        return datasets.DatasetDict({"train": split(0), "validation": split(1), "test": split(2, hidden=True)})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_class_numbers_become_names_and_a_split_with_hidden_labels_is_left_out(tmp_path, monkeypatch, caplog):
    _class_label_hub(monkeypatch)
    result = tunesmith.run(_recipe({"hub": "acme/glue-like", "text_column": "sentence"}), tmp_path / "run")
    assert sorted(result.metrics["labels"]) == ["negative", "positive"]  # not 0 and 1
    saved = yaml.safe_load((result.run_dir / "recipe.yaml").read_text())["data"]
    assert saved["test"] is None and result.metrics["eval_set"] == "validation"
    assert set(pd.read_parquet(saved["train"]).label) == {"negative", "positive"}
    assert "hides its labels" in caplog.text and "test" in caplog.text


def test_class_numbers_in_lists_become_lists_of_names(tmp_path, monkeypatch):
    import datasets

    from tunesmith.data.hub import _as_parquet, _split_names

    names = ["anger", "joy", "neutral"]
    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.List(datasets.ClassLabel(names=names))}
    )
    part = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "labels": [[0, 1], [2], []]}, features=features)
    section = tunesmith.recipe.DataSection.model_validate({"hub": "acme/emotions"})
    files = _as_parquet(datasets.DatasetDict({"train": part}), section, _split_names(section))
    assert [list(x) for x in pd.read_parquet(files["train"]).labels] == [["anger", "joy"], ["neutral"], []]


def test_data_roots_are_searched_in_order_for_files_and_hub_mirrors(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    (second / "mine").mkdir(parents=True)
    sentiment_rows(120, 0).to_csv(second / "mine" / "train.csv", index=False)
    for root, seed in ((first, 3), (second, 4)):  # the same id in both: the first root's copy is read
        folder = root / "acme" / "reviews" / "en"
        folder.mkdir(parents=True)
        sentiment_rows(100 + seed, seed).to_csv(folder / "train.csv", index=False)
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", os.pathsep.join(map(str, (first, second))))
    recipe = tunesmith.recipe.load_recipe(_recipe({"train": "mine/train.csv"}))
    assert recipe.data.train == str(second / "mine" / "train.csv")
    from tunesmith.data.hub import materialize

    hub = materialize(tunesmith.recipe.load_recipe(_recipe({"hub": "acme/reviews", "config": "en"})))
    assert hub.data.train == str(first / "acme" / "reviews" / "en" / "train.csv")  # the config's own folder
    done = runner.invoke(app, ["data", "check", "--help"])
    assert "Repeatable" in done.output


def test_data_mirror_saves_a_hub_dataset_that_runs_offline_and_never_replaces_a_folder(tmp_path, monkeypatch):
    calls = []
    _class_label_hub(monkeypatch, calls)
    out = tmp_path / "mirror"
    done = runner.invoke(app, ["data", "mirror", "acme/glue-like", "--config", "en", "-o", str(out)])
    assert done.exit_code == 0, done.output
    folder = out / "acme" / "glue-like" / "en"
    assert (folder / "dataset_dict.json").is_file() and calls == [("acme/glue-like", "en", None)]
    again = runner.invoke(app, ["data", "mirror", "acme/glue-like", "--config", "en", "-o", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output and len(calls) == 1
    for bad in ("../etc", "acme/.."):
        refused = runner.invoke(app, ["data", "mirror", bad, "-o", str(out)])
        assert refused.exit_code == 2 and "data.hub" in refused.output
    assert runner.invoke(app, ["data", "mirror", "acme/x", "--config", "../../up", "-o", str(out)]).exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]  # nothing written outside the mirror
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("the Hub is asked while a mirror is set"))
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(out))
    recipe = _recipe({"hub": "acme/glue-like", "config": "en", "text_column": "sentence"})
    result = tunesmith.run(recipe, tmp_path / "run")
    assert sorted(result.metrics["labels"]) == ["negative", "positive"] and result.metrics["eval_set"] == "validation"


SHIPPED_HUB = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "recipes" / "emotion_tags.yaml"


@pytest.mark.parametrize("form", ["saved", "files"])
def test_a_shipped_hub_recipe_reads_the_same_rows_from_either_mirror_form(form, tmp_path, monkeypatch):
    """emotion_tags names google-research-datasets/go_emotions: offline, the copy `data mirror` saves and plain
    split files hold the same rows, labels as names."""
    import importlib.util

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "goemotions_multilabel").is_dir():
        pytest.skip("shared benchmark data not present")
    spec = importlib.util.spec_from_file_location("hub_mirror", SHIPPED_HUB.parents[3] / "scripts" / "hub_mirror.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "MIRRORS", {k: v for k, v in module.MIRRORS.items() if "go_emotions" in k[0]})
    monkeypatch.setenv("TUNESMITH_DATA_ROOT", str(module.build(tmp_path / form, shared, as_files=form == "files")))
    from tunesmith.data.hub import materialize

    data = materialize(tunesmith.recipe.load_recipe(SHIPPED_HUB)).data
    train = pd.read_parquet(data.train)
    expected = pd.read_csv(shared / "goemotions_multilabel" / "train.csv", keep_default_na=False)
    assert len(train) == len(expected) == 43410 and data.source.startswith("hub:google-research-datasets/go_emotions")
    assert [list(x) for x in train.labels[:50]] == [x.split("|") for x in expected.labels[:50]]
    assert pd.read_parquet(data.test).shape[0] == 5427
