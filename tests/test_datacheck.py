"""The data check finds what it says it finds, exits non-zero only when training would fail, and is
kept in the run directory by `train`."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesmith
from tests.conftest import sentiment_rows
from tunesmith.check import check_recipe
from tunesmith.cli import app

runner = CliRunner()


def _messy(tmp_path) -> dict:
    train = sentiment_rows(60, 0)
    extra = pd.DataFrame(
        [
            {"text": train.text[0], "label": train.label[0]},  # exact duplicate row
            {"text": "same words here", "label": "positive"},
            {"text": "same words here", "label": "negative"},  # conflicting labels
            {"text": "very long " * 40 + "good", "label": "positive"},  # truncated at max_length 32
        ]
    )
    pd.concat([train, extra]).to_csv(tmp_path / "train.csv", index=False)
    test = sentiment_rows(10, 5)
    test.loc[0, "text"] = train.text[3]  # exact overlap
    test.loc[1, "text"] = "  " + train.text[4].upper() + " "  # overlap after normalising
    test.to_csv(tmp_path / "test.csv", index=False)
    return _messy_paths(tmp_path)


def test_finds_duplicates_conflicts_overlap_and_truncation(tmp_path):
    report = check_recipe(tunesmith.load_recipe(_messy(tmp_path)))
    assert report.ok, report.errors
    entry = report.datasets[0]
    assert entry["splits"]["train"]["rows"] == 64 and entry["splits"]["test"]["rows"] == 10
    assert entry["duplicates"] == 1 and entry["conflicting_texts"] == 1
    assert entry["overlap_with_train"]["test"] == {"exact": 1, "normalised": 2, "rows": 10}
    assert entry["labels"]["train"] == {"positive": 33, "negative": 31}
    lengths = entry["lengths"]
    assert lengths["truncated"] == 1 and lengths["max"] > 32 and sum(c for _, c in lengths["histogram"]) == 64
    text = " ".join(report.warnings)
    for words in (
        "1 duplicate training row",
        "different labels",
        "also appear in training data",
        "exceed train.max_length=32",
    ):
        assert words in text


def test_the_check_reads_in_chunks_and_finds_the_same(tmp_path, monkeypatch):
    """Chunks of 7 rows and token lengths in blocks of 9: every count as from one read, rows named file-wide."""
    from tunesmith.check import common
    from tunesmith.data import columns

    monkeypatch.setattr(columns, "CHUNK", 7)
    monkeypatch.setattr(columns, "BLOCK", 5)
    monkeypatch.setattr(common, "LENGTH_BLOCK", 9)
    report = check_recipe(tunesmith.load_recipe(_messy(tmp_path)))
    entry = report.datasets[0]
    assert report.ok and entry["duplicates"] == 1 and entry["conflicting_texts"] == 1
    assert entry["overlap_with_train"]["test"] == {"exact": 1, "normalised": 2, "rows": 10}
    assert entry["labels"]["train"] == {"positive": 33, "negative": 31} and entry["lengths"]["truncated"] == 1
    assert "'same words here': ['negative', 'positive']" in " ".join(report.warnings)
    frame = pd.read_csv(tmp_path / "train.csv")
    frame.loc[[39, 54], "text"] = " "
    frame.to_csv(tmp_path / "train.csv", index=False)
    report = check_recipe(tunesmith.load_recipe(_messy_paths(tmp_path)))
    assert report.datasets[0]["splits"]["train"]["empty_text"] == 2
    assert any(
        "2 empty or non-text (blank counts as empty) cell(s) in column 'text' (data rows 40, 55)" in e
        for e in report.errors
    )


def _messy_paths(tmp_path) -> dict:
    """_messy's recipe for the files already in tmp_path."""
    return {
        "model": {"name": "tiny-bert"},
        "data": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")},
        "train": {"max_length": 32, "epochs": 1},
        "eval": {"baseline": "none"},
    }


def test_cli_prints_the_report_and_writes_it(tmp_path):
    import yaml

    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_messy(tmp_path)))
    result = runner.invoke(app, ["data", "check", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Token lengths" in result.output and "Shared with the training data" in result.output
    saved = json.loads((tmp_path / "out" / "data_check.json").read_text())
    assert saved["ok"] and saved["datasets"][0]["duplicates"] == 1


def test_errors_give_exit_code_1_and_list_everything_at_once(tmp_path):
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n,x\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "one.csv"), "--model", "tiny-bert"])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "1 empty or non-text" in out and "1 class(es)" in out  # both problems, not just the first


def test_train_keeps_the_report_and_stops_on_errors(toy_data, tmp_path):
    run_dir = tunesmith.run(
        {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}, output_dir=tmp_path / "run"
    ).run_dir
    assert "# Data check" in (run_dir / "data_check.md").read_text()
    assert json.loads((run_dir / "data_check.json").read_text())["ok"]
    (tmp_path / "bad.csv").write_text("text,label\na,x\nb,x\n")
    bad = {**toy_data["recipe"], "data": {"train": str(tmp_path / "bad.csv")}}
    import pytest

    with pytest.raises(tunesmith.TunesmithError, match="data check found 1 problem"):
        tunesmith.run(bad, output_dir=tmp_path / "bad_run")
    assert not (tmp_path / "bad_run").exists()  # nothing paid for, nothing written


def test_chat_data_round_trip_and_masked_samples(tmp_path):
    rows = [{"prompt": f"question {i}", "response": "answer"} for i in range(6)]
    # a long prompt gives up its middle to its answer, but keeps half of max_length: with the template's own
    # tokens, these two responses still start past max_length
    rows += [{"prompt": "word " * 80, "response": "lost"}] * 2
    pd.DataFrame(rows).to_json(tmp_path / "chat.jsonl", orient="records", lines=True)
    recipe = tunesmith.load_recipe(
        {
            "task": "generation",
            "model": {"name": "tiny-llama"},
            "data": {"train": str(tmp_path / "chat.jsonl")},
            "train": {"max_length": 30},
        }
    )
    report = check_recipe(recipe)
    entry = report.datasets[0]
    assert report.ok and entry["splits"]["train"]["format"] == "prompt_response"
    assert entry["template_round_trip"] == {"checked": 8, "lost_text": 0}
    assert entry["fully_masked"] == 2 and entry["duplicates"] == 1
    assert any("2 of 8 training samples have no response token" in w for w in report.warnings)


def test_chat_lengths_are_measured_on_a_seeded_sample(tmp_path, monkeypatch):
    from tunesmith.check import chat

    monkeypatch.setattr(chat, "CHAT_LENGTH_SAMPLE", 5)
    rows = [{"prompt": f"question {i} " + "word " * i, "response": "answer"} for i in range(12)]
    pd.DataFrame(rows).to_json(tmp_path / "chat.jsonl", orient="records", lines=True)
    recipe = {"task": "generation", "model": "tiny-llama", "data": {"train": str(tmp_path / "chat.jsonl")}}
    first, again = (check_recipe(tunesmith.load_recipe(recipe)).datasets[0]["lengths"] for _ in range(2))
    assert first["count"] == 5 and first["sampled"] and first == again  # seeded: the same sample each time


def _warn(recipe: dict) -> dict:
    return {**recipe, "train": {**recipe["train"], "epochs": 1, "data_check": "warn"}}


def test_warn_leaves_out_the_rows_training_cannot_use_and_trains_on_the_rest(toy_data, tmp_path, logged):
    import pytest

    train = pd.read_csv(toy_data["recipe"]["data"]["train"])
    train.loc[3, "text"] = "  "  # an empty text
    train.loc[7, "label"] = None  # an empty label
    train.to_csv(tmp_path / "train.csv", index=False)
    test = pd.read_csv(toy_data["recipe"]["data"]["test"])
    test.loc[0, "label"] = "neutral"  # a label training never saw
    test.to_csv(tmp_path / "test.csv", index=False)
    recipe = {**toy_data["recipe"], "data": {**toy_data["recipe"]["data"], "train": str(tmp_path / "train.csv")}}
    recipe["data"]["test"] = str(tmp_path / "test.csv")
    with pytest.raises(tunesmith.TunesmithError, match="data check found 3 problem"):
        tunesmith.run(recipe, output_dir=tmp_path / "stopped")  # the default stops, naming all three
    metrics = tunesmith.run(_warn(recipe), output_dir=tmp_path / "run").metrics
    assert metrics["train"]["train_size"] == 160 - 2 and metrics["eval_size"] == 40 - 1
    said = logged()
    assert "data check error (train.data_check: warn)" in said
    left = said.split("left out (train.data_check: warn): ")[1:]
    for problem in (
        "in column 'text' at data row(s) 4",
        "empty label cell(s) in column 'label' at data row(s) 8",
        "'neutral' never appear",
    ):
        assert any(problem in line for line in left), problem
    assert not json.loads((tmp_path / "run" / "data_check.json").read_text())["ok"]  # the report keeps the errors


def test_warn_still_stops_on_a_problem_of_the_whole_file(toy_data, tmp_path):
    import pytest

    pd.read_csv(toy_data["recipe"]["data"]["train"]).rename(columns={"text": "body"}).to_csv(
        tmp_path / "renamed.csv", index=False
    )
    recipe = _warn({**toy_data["recipe"], "data": {"train": str(tmp_path / "renamed.csv")}})
    with pytest.raises(tunesmith.TunesmithError, match="no column 'text'"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")


def test_every_reader_leaves_out_bad_rows_only_when_told(tmp_path):
    import pytest

    from tunesmith.data.bad_rows import leaving_out
    from tunesmith.data.conversations import load_generation
    from tunesmith.data.multilabel import load_multilabel
    from tunesmith.data.preference import load_preference
    from tunesmith.data.regression import load_regression
    from tunesmith.data.token_files import load_tokens
    from tunesmith.recipe import DataSection

    def jsonl(name, rows):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        return str(tmp_path / name)

    cases = {  # loader, data section, the bad row, how many good rows there are
        "generation": (
            load_generation,
            {
                "train": jsonl(
                    "chat.jsonl",
                    [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(9)] + [{"prompt": "q", "response": " "}],
                )
            },
            lambda d: len(d.train) + len(d.validation),
        ),
        "chat messages": (
            load_generation,
            {
                "train": jsonl(
                    "msgs.jsonl",
                    [
                        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
                        for i in range(9)
                    ]
                    + [{"messages": [{"role": "user", "content": "no answer"}]}],
                )
            },
            lambda d: len(d.train) + len(d.validation),
        ),
        "preference": (
            load_preference,
            {
                "train": jsonl(
                    "pairs.jsonl",
                    [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(9)]
                    + [{"prompt": "q", "chosen": "same", "rejected": "same"}],
                )
            },
            lambda d: len(d.train.pairs) + len(d.validation.pairs),
        ),
        "multi-label": (
            load_multilabel,
            {
                "train": jsonl(
                    "ml.jsonl",
                    [{"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2]} for i in range(9)]
                    + [{"text": "", "label": ["a"]}],
                )
            },
            lambda d: len(d.train) + len(d.validation),
        ),
        "regression": (
            load_regression,
            {
                "train": jsonl(
                    "rg.jsonl", [{"text": f"t{i}", "label": i / 2} for i in range(9)] + [{"text": "t", "label": "high"}]
                )
            },
            lambda d: len(d.train) + len(d.validation),
        ),
        "entities": (
            load_tokens,
            {
                "train": jsonl(
                    "ner.jsonl",
                    [{"tokens": ["Ann", "runs"], "tags": ["B-PER", "O"]} for _ in range(9)]
                    + [{"tokens": ["Ann", "runs"], "tags": ["B-PER"]}],
                )
            },
            lambda d: len(d.train.tokens) + len(d.validation.tokens),
        ),
    }
    for name, (load, data, count) in cases.items():
        section = DataSection(**data)
        with pytest.raises(tunesmith.TunesmithError):
            load(section, 0)
        with leaving_out():
            assert count(load(section, 0)) == 9, name


def test_a_row_readers_error_names_every_bad_row(tmp_path):
    import pytest

    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(30)]
    rows[3]["rejected"] = rows[3]["chosen"]  # prefers nothing
    rows[7]["chosen"] = ""  # empty
    rows[21]["prompt"] = "  "
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    recipe = {"task": "generation", "model": "tiny-llama", "data": {"train": str(tmp_path / "pairs.jsonl")}}
    recipe["method"] = {"name": "preference"}
    report = check_recipe(tunesmith.load_recipe(recipe))
    assert any("data row 4" in e and "In all, 3 rows cannot be used: data rows 4, 8, 22." in e for e in report.errors)
    with pytest.raises(tunesmith.TunesmithError, match="data rows 4, 8, 22"):
        tunesmith.run(recipe, output_dir=tmp_path / "run")


@pytest.mark.parametrize(
    ("row", "task", "said"),
    [
        ({"prompt": "Hi", "response": "Hello"}, "generation", "prompts and their answers"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}, "generation", None),
        ({"tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]}, "token_classification", "words and their tags"),
        ({"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}, "generation", "preference pairs"),
        ({"text": "fine", "label": "pos"}, "classification", None),
        ({"text": "fine", "label": "pos", "prompt": "p", "response": "r"}, "classification", None),
        ({"text": "fine", "labels": ["joy", "love"]}, "multi_label", "lists of labels in 'labels'"),
        ({"text": "fine", "labels": "joy|love"}, "multi_label", "labels joined by '|'"),
        ({"text": "fine", "labels": "joy"}, "classification", "one label a row in 'labels'"),
    ],
)
def test_a_data_file_without_task_is_checked_as_its_columns_say(tmp_path, row, task, said):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(row) for _ in range(3)) + "\n")
    model = "tiny-llama" if task == "generation" else "tiny-bert"
    done = runner.invoke(app, ["data", "check", str(path), "--model", model, "-o", str(tmp_path / "c")])
    entry = json.loads((tmp_path / "c" / "data_check.json").read_text())["datasets"][0]
    assert entry["task"] == task, done.output
    printed = " ".join(done.output.split())
    assert ("Checked as" in printed) == (said is not None or task != "classification")
    if said:
        assert said in printed
    if said == "preference pairs":
        assert entry["splits"]["train"]["format"] == "preference pairs"
    if task == "multi_label":  # each label of a set counted on its own
        assert entry["labels"]["train"] == {"joy": 3, "love": 3}
