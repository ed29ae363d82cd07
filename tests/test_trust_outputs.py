"""Files a command writes at -o: `predict`, `generate`, `eval` and `data check` never replace the input, never replace
an existing file without --overwrite, and never leave a partial file when the disk fills up."""

import errno

import pandas as pd
import pytest
from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    import json

    import tunesmith

    folder = tmp_path_factory.mktemp("chat")
    (folder / "chat.jsonl").write_text(
        "\n".join(json.dumps({"prompt": f"order {i}", "response": "track"}) for i in range(8))
    )
    return tunesmith.run(
        {
            "task": "generation",
            "model": "tiny-llama",
            "data": {"train": str(folder / "chat.jsonl")},
            "train": {"epochs": 1},
            "eval": {"max_samples": 1, "max_new_tokens": 2, "baseline": "none"},
        },
        output_dir=folder / "run",
    ).run_dir


def test_predict_never_writes_over_its_input_even_with_overwrite(finished, tmp_path):
    data = tmp_path / "x.csv"
    before = data.read_bytes()
    for extra in ([], ["--overwrite"]):
        done = runner.invoke(app, ["predict", str(finished), str(data), "-o", str(data), *extra])
        assert done.exit_code == 2 and "is the input file" in done.output, done.output
        assert data.read_bytes() == before
    (tmp_path / "link.csv").symlink_to(data)  # the same file under another name
    done = runner.invoke(app, ["predict", str(finished), str(tmp_path / "link.csv"), "-o", str(data), "--overwrite"])
    assert done.exit_code == 2 and data.read_bytes() == before


@pytest.mark.parametrize("command", ["predict", "eval", "generate"])
def test_an_existing_output_is_kept_unless_overwrite(finished, chat_run, tmp_path, command):
    target = tmp_path / ("out.json" if command == "eval" else "out.csv")
    target.write_text("yesterday's results")
    if command == "generate":
        pd.DataFrame({"prompt": ["where is my order"]}).to_csv(tmp_path / "p.csv", index=False)
        args = ["generate", str(chat_run), str(tmp_path / "p.csv"), "--max-new-tokens", "2"]
    elif command == "eval":
        args = ["eval", str(finished), "--data", str(tmp_path / "x.csv")]
    else:
        args = ["predict", str(finished), str(tmp_path / "x.csv")]
    done = runner.invoke(app, [*args, "-o", str(target)])
    assert done.exit_code == 2 and "already exists" in done.output and "--overwrite" in done.output
    assert target.read_text() == "yesterday's results"
    done = runner.invoke(app, [*args, "-o", str(target), "--overwrite"])
    assert done.exit_code == 0, done.output
    assert target.read_text() != "yesterday's results"


def test_data_check_keeps_a_report_of_the_users_own(tmp_path, finished):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "data_check.md").write_text("my notes")
    done = runner.invoke(
        app, ["data", "check", str(tmp_path / "x.csv"), "--model", "tiny-bert", "-o", str(tmp_path / "reports")]
    )
    assert done.exit_code == 2 and "already exists" in done.output
    assert (tmp_path / "reports" / "data_check.md").read_text() == "my notes"
    assert not (tmp_path / "reports" / "data_check.json").exists()


def test_a_full_disk_leaves_no_partial_output(finished, tmp_path, monkeypatch):
    def full(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("text,predicted_label\nhalf a ro")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    done = runner.invoke(app, ["predict", str(finished), str(tmp_path / "x.csv"), "-o", str(tmp_path / "out.csv")])
    assert done.exit_code == 2 and "No space left" in done.output, done.output
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []
