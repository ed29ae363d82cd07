"""A corpus of bad inputs, each through the CLI: a non-zero exit code, the key words of a clear message,
and never a traceback. Each case builds its files in a fresh folder and returns the command to run."""

import errno
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import sentiment_rows
from tunesmith.cli import app

runner = CliRunner()


def _recipe(d: Path, **changes) -> dict:
    sentiment_rows(40, 0).to_csv(d / "train.csv", index=False)
    recipe = {
        "model": {"name": "tiny-bert"},
        "data": {"train": "train.csv"},
        "train": {"epochs": 1},
        "eval": {"baseline": "none"},
    }
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = recipe.setdefault(node, {})
        for key in path[:-1]:
            target = target.setdefault(key, {})
        if path:
            target[path[-1]] = value
        else:
            recipe[node] = value
    return recipe


def _train(d: Path, recipe: dict | str | bytes, *extra) -> list:
    path = d / "recipe.yaml"
    if isinstance(recipe, dict):
        path.write_text(yaml.safe_dump(recipe))
    elif isinstance(recipe, bytes):
        path.write_bytes(recipe)
    else:
        path.write_text(recipe)
    return ["train", path, "-o", d / "run", *extra]


def _train_on(d: Path, name: str, content: str | bytes | None, **changes) -> list:
    """Train with `name` (written with `content`) as the training file."""
    if isinstance(content, bytes):
        (d / name).write_bytes(content)
    elif content is not None:
        (d / name).write_text(content, encoding="utf-8")
    return _train(d, _recipe(d, data__train=name, **changes))


def _finished_run_with_other_recipe(d: Path) -> list:
    (d / "run").mkdir()
    (d / "run" / "run.json").write_text(json.dumps({"status": "finished"}))
    return _train(d, _recipe(d))


def _unfinished_run(d: Path) -> list:
    (d / "run").mkdir()
    (d / "run" / "run.json").write_text(
        json.dumps({"status": "running", "pid": 2**22 + 7, "host": __import__("socket").gethostname()})
    )
    return ["predict", d / "run", d / "train.csv", "-o", d / "p.csv"]


def _chat(d: Path, rows: list[dict], **train) -> list:
    pd.DataFrame(rows).to_json(d / "chat.jsonl", orient="records", lines=True)
    return _train(
        d,
        {
            "task": "generation",
            "model": {"name": "tiny-llama"},
            "data": {"train": "chat.jsonl"},
            "train": {"epochs": 1, **train},
            "eval": {"max_samples": 2},
        },
    )


CSV_OK = "text,label\ngood film,positive\nbad film,negative\n"
CASES = {
    # ------------------------------------------------------------------ recipes
    "yaml syntax": (lambda d: _train(d, "model:\n  name: tiny-bert\n data: [oops\n"), ["invalid YAML", "line"]),
    "yaml is a list": (lambda d: _train(d, "- model\n- data\n"), ["must be a YAML mapping"]),
    "empty recipe": (lambda d: _train(d, ""), ["must be a YAML mapping"]),
    "recipe not found": (lambda d: ["train", d / "nope.yaml"], ["Recipe file not found"]),
    "recipe not utf-8": (lambda d: _train(d, "model:\n  name: caf\xe9\n".encode("latin-1")), ["not UTF-8"]),
    "recipe is binary": (lambda d: _train(d, b"\x00\x01\x02\xff\xfe binary"), ["recipe"]),
    "unknown top key": (lambda d: _train(d, _recipe(d, trian={"epochs": 1})), ["trian", "train"]),
    "unknown nested key": (lambda d: _train(d, _recipe(d, train__learning_rate=1e-3)), ["learning_rate", "'lr'"]),
    "wrong type": (lambda d: _train(d, _recipe(d, train__epochs="three")), ["train.epochs", "number"]),
    "out of range": (lambda d: _train(d, _recipe(d, train__lr=-1)), ["train.lr", "greater than 0"]),
    "unknown method": (lambda d: _train(d, _recipe(d, method={"name": "magic"})), ["magic", "supervised"]),
    "unknown task": (lambda d: _train(d, _recipe(d, task="translation")), ["task", "classification"]),
    "missing model": (lambda d: _train(d, {"data": {"train": "train.csv"}}), ["model"]),
    "unknown model alias": (lambda d: _train(d, _recipe(d, model={"name": "tiny-bret"})), ["tiny-bret", "tiny-bert"]),
    "model folder missing": (lambda d: _train(d, _recipe(d, model={"name": str(d / "my-model")})), ["my-model"]),
    "model folder without config": (
        lambda d: ((d / "m").mkdir(), _train(d, _recipe(d, model={"name": str(d / "m")})))[1],
        ["config.json"],
    ),
    "bad --set syntax": (lambda d: _train(d, _recipe(d), "--set", "train.lr"), ["section.key=value"]),
    "--set unknown key": (lambda d: _train(d, _recipe(d), "--set", "train.epoch=2"), ["train.epoch", "epochs"]),
    # ------------------------------------------------------------------ data files
    "data file missing": (lambda d: _train_on(d, "absent.csv", None), ["file not found"]),
    "data file empty": (lambda d: _train_on(d, "x.csv", ""), ["empty (0 bytes)"]),
    "header only": (lambda d: _train_on(d, "x.csv", "text,label\n"), ["no data rows"]),
    "text column missing": (
        lambda d: _train_on(d, "x.csv", "txt,label\na,positive\nb,negative\n"),
        ["no column 'text'", "txt"],
    ),
    "label column missing": (lambda d: _train_on(d, "x.csv", "text,lable\na,x\nb,y\n"), ["no column 'label'", "lable"]),
    "empty text cells": (
        lambda d: _train_on(d, "x.csv", "text,label\n,positive\n   ,negative\nok,positive\nfine,negative\n"),
        ["2 empty or non-text", "rows 1, 2"],
    ),
    "empty label cells": (
        lambda d: _train_on(d, "x.csv", "text,label\na,\nb,negative\nc,positive\n"),
        ["empty cell(s) in column 'label'"],
    ),
    "one class only": (
        lambda d: _train_on(d, "x.csv", "text,label\na,positive\nb,positive\nc,positive\n"),
        ["1 class"],
    ),
    "malformed jsonl": (
        lambda d: _train_on(d, "x.jsonl", '{"text": "a", "label": "p"}\n{oops\n'),
        ["x.jsonl:2", "malformed JSON"],
    ),
    "jsonl line not an object": (
        lambda d: _train_on(d, "x.jsonl", '{"text": "a", "label": "p"}\n[1, 2]\n'),
        ["x.jsonl:2", "JSON object"],
    ),
    "json not a list of objects": (lambda d: _train_on(d, "x.json", '"just a string"'), ["list of objects"]),
    "malformed csv": (lambda d: _train_on(d, "x.csv", 'text,label\n"a,b,c,d\nx,y,z\n'), ["x.csv"]),
    "unquoted comma in the first row": (  # pandas would take the texts as an index and read texts as labels
        lambda d: _train_on(d, "x.csv", "text,label\nHello, world,positive\nbad,negative\nok,positive\n"),
        ["x.csv", "line 2 has 3 fields where the header has 2", "double quotes"],
    ),
    "unquoted comma in the first row after a blank line": (  # pandas skips the blank line, and so does the check
        lambda d: _train_on(d, "x.csv", "text,label\n\nHello, world,positive\nbad,negative\nok,positive\n"),
        ["x.csv", "line 3 has 3 fields where the header has 2"],
    ),
    "unquoted comma in a later row": (
        lambda d: _train_on(d, "x.csv", "text,label\nbad,negative\nHello, world,positive\nok,positive\n"),
        ["x.csv", "line 3, saw 3", "quoting"],
    ),
    "binary file as csv": (lambda d: _train_on(d, "x.csv", b"PK\x03\x04\x00\x00binary zip"), ["binary"]),
    "latin-1 csv": (
        lambda d: _train_on(d, "x.csv", "text,label\ncaf\xe9 ok,positive\nbad,negative\n".encode("latin-1")),
        ["not UTF-8"],
    ),
    "unsupported extension": (lambda d: _train_on(d, "x.docx", b"whatever"), ["unsupported extension", ".docx"]),
    "an .xlsx that is no workbook": (lambda d: _train_on(d, "x.xlsx", b"whatever"), ["not a readable .xlsx file"]),
    "folder instead of file": (
        lambda d: ((d / "folder.csv").mkdir(), _train_on(d, "folder.csv", None))[1],
        ["is a folder"],
    ),
    "corrupt parquet": (lambda d: _train_on(d, "x.parquet", b"not parquet at all"), ["not a readable Parquet"]),
    "huge field": (
        lambda d: _train_on(d, "x.csv", "text,label\n" + "a" * 1_200_000 + ",positive\nb,negative\n"),
        ["1,200,000 characters", "row 1"],
    ),
    "unseen label in test": (
        lambda d: (
            _write(d, "t.csv", "text,label\na,positive\nb,neutral\n"),
            _train(d, _recipe(d, data__test="t.csv")),
        )[1],
        ["'neutral'", "never appear"],
    ),
    "fewer than K per class": (
        lambda d: _train(d, _recipe(d, data__samples_per_class=50, method={"name": "few_shot"})),
        ["samples_per_class=50", "fewer than 50"],
    ),
    "filter matches nothing": (lambda d: _train(d, _recipe(d, data__filter={"label": "neutral"})), ["no rows match"]),
    "chat: bad role": (lambda d: _chat(d, [{"messages": [{"role": "robot", "content": "hi"}]}] * 4), ["robot"]),
    "chat: every label masked": (
        lambda d: _chat(d, [{"prompt": "word " * 60, "response": "yes"}] * 6, max_length=16),
        ["no response token", "max_length"],
    ),
    # ------------------------------------------------------------------ run directories and writing
    "output holds another run": (_finished_run_with_other_recipe, ["already holds a run", "--overwrite"]),
    "output is a file": (lambda d: ((d / "run").write_text("x"), _train(d, _recipe(d)))[1], ["not a folder"]),
    "predict on unfinished run": (_unfinished_run, ["not finished", "interrupted", "--resume"]),
    "predict on a non-run folder": (
        lambda d: ["predict", d, d / "x.csv", "-o", d / "p.csv"],
        ["not a tunesmith run directory"],
    ),
    "eval on a missing folder": (
        lambda d: ["eval", d / "nothing", "--data", d / "x.csv"],
        ["not a tunesmith run directory"],
    ),
    "resume a finished run": (
        lambda d: (
            (d / "run").mkdir(),
            (d / "run" / "run.json").write_text('{"status": "finished"}'),
            (d / "run" / "recipe.yaml").write_text(yaml.safe_dump(_recipe(d))),
            ["train", "--resume", d / "run"],
        )[-1],
        ["already finished"],
    ),
    "data check of a missing file": (lambda d: ["data", "check", d / "none.csv"], ["file not found"]),
}


def _write(d: Path, name: str, content: str) -> None:
    (d / name).write_text(content)


def test_the_corpus_is_large():
    from tests.test_bad_inputs_more import CASES as MORE

    assert not set(CASES) & set(MORE)
    assert len(CASES) + len(MORE) >= 90


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_clear_message(tmp_path, case):
    assert_clear_message(tmp_path, *CASES[case])


def assert_clear_message(tmp_path, make, words) -> None:
    """Run the case's command: exit 1 or 2, an error naming the key words, no traceback, no planted pickle run."""
    args = make(tmp_path)
    result = runner.invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code in (1, 2), f"exit {result.exit_code}: {result.output}"
    assert "error" in text.lower() and "Traceback" not in text
    for word in words:
        assert word in text, f"{word!r} not in: {text}"
    assert not (tmp_path / "pwned").exists(), "a planted pickle ran"


@pytest.mark.parametrize("problem", [errno.ENOSPC, errno.EACCES])
def test_disk_full_and_permission_errors_are_messages(tmp_path, monkeypatch, problem):
    import tunesmith.runs.rundir

    args = _train(tmp_path, _recipe(tmp_path))

    def fail(*_, **__):
        raise OSError(problem, __import__("os").strerror(problem), str(tmp_path / "run" / "model"))

    monkeypatch.setattr(tunesmith.runs.rundir, "save_model", fail)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert __import__("os").strerror(problem) in " ".join(result.output.split())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
