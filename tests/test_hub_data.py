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
