"""More of the bad-input corpus (with test_bad_inputs.py): hostile run directories, planted pickles, damaged
files, and the messages that used to mislead. Each case: a non-zero exit, the key words, never a traceback."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.hostile import fake_run, finished_run, interrupted_run, plant_pickle
from tests.test_bad_inputs import _recipe, _train, _train_on, assert_clear_message

CACHE: dict[str, Path] = {}


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    CACHE["dir"] = tmp_path_factory.mktemp("finished")


def _finished(d: Path) -> Path:
    return finished_run(d, CACHE["dir"])


def _recipe_file(d: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    path = d / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


def _damage(d: Path, relative: str, content: str | bytes | None) -> Path:
    """A finished run with one file replaced (None: deleted)."""
    run = _finished(d)
    target = run / relative
    if content is None:
        __import__("shutil").rmtree(target) if target.is_dir() else target.unlink()
    else:
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return run


def _as_few_shot(run: Path) -> None:
    """The run's metrics say few_shot trained it: its predictor reads model/head.json."""
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "method": "few_shot", "model_kind": "encoder"}))


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.csv")
    return d / "pipe.csv"


def _symlink_loop(d: Path) -> Path:
    (d / "a.csv").symlink_to(d / "b.csv")
    (d / "b.csv").symlink_to(d / "a.csv")
    return d / "a.csv"


def _user_folder(d: Path, name: str = "mine") -> Path:
    (d / name).mkdir()
    (d / name / "notes.txt").write_text("my own file")
    return d / name


CASES = {
    # ------------------------------------------------------------------ security and lost data
    "planted pickle as checkpoint": (
        lambda d: (plant_pickle(interrupted_run(d) / "checkpoint.pt", d / "pwned"), ["train", "--resume", d / "run"])[
            1
        ],
        ["never loads", "checkpoint.pt"],
    ),
    "recipe with a python tag": (
        lambda d: _train(d, "model: !!python/object/apply:os.system ['touch pwned']\n"),
        ["invalid YAML"],
    ),
    "-o folder holds user files": (lambda d: _train(d, _recipe(d), "-o", _user_folder(d)), ["not empty", "notes.txt"]),
    "output.dir names a user folder": (
        lambda d: [
            "train",
            _recipe_file(d, yaml.safe_dump({**_recipe(d), "output": {"dir": str(_user_folder(d, "victim"))}})),
        ],
        ["victim", "not empty"],
    ),
    "--overwrite a live run": (
        lambda d: (fake_run(d, "running"), _train(d, _recipe(d), "--overwrite"))[1],
        ["still writing", "alive"],
    ),
    "train.lr infinite": (
        lambda d: _train(d, "model: {name: tiny-bert}\ndata: {train: train.csv}\ntrain: {lr: .inf}\n"),
        ["train.lr", "finite"],
    ),
    "train.epochs nan": (lambda d: _train(d, _recipe(d), "--set", "train.epochs=.nan"), ["train.epochs", "finite"]),
    "loss becomes nan": (
        lambda d: _train(d, _recipe(d, train__lr=1e30, train__precision="fp32")),
        ["training loss became", "step", "Lower train.lr"],
    ),
    # ------------------------------------------------------------------ silent wrong results
    "export a classification run as GGUF": (
        lambda d: ["export", fake_run(d), "--format", "gguf"],
        ["classification run", "onnx"],
    ),
    "list labels in jsonl": (
        lambda d: _train_on(
            d, "x.jsonl", "\n".join(json.dumps({"text": f"t {i}", "label": ["a", "b"]}) for i in range(6))
        ),
        ["lists", "multi-label"],
    ),
    "list labels in parquet": (
        lambda d: (
            pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [["x"], ["y"], ["x", "y"], ["y"]]}).to_parquet(
                d / "x.parquet"
            ),
            _train_on(d, "x.parquet", None),
        )[1],
        ["lists", "multi-label"],
    ),
    "object labels in json": (
        lambda d: _train_on(d, "x.json", json.dumps([{"text": "a", "label": {"k": 1}}] * 4)),
        ["lists", "multi-label"],
    ),
    "repeated header": (
        lambda d: _train_on(d, "x.csv", "text,label,text\na,p,b\nc,n,d\n"),
        ["'text'", "more than once"],
    ),
    "NUL byte after 4 KB": (
        lambda d: _train_on(d, "x.csv", b"text,label\n" + b"word good,p\n" * 600 + b"a\x00b,n\n"),
        ["binary", "NUL byte at offset"],
    ),
    # ------------------------------------------------------------------ used to be tracebacks
    "data check: only blank texts": (
        lambda d: (Path(d / "x.csv").write_text("text,label\n ,a\n  ,b\n"), ["data", "check", d / "x.csv"])[1],
        ["empty", "no usable training rows"],
    ),
    "data check: parquet struct column": (
        lambda d: (
            pd.DataFrame({"text": [{"a": 1}, {"a": 2}], "label": ["x", "y"]}).to_parquet(d / "x.parquet"),
            ["data", "check", d / "x.parquet"],
        )[1],
        ["non-text", "no usable training rows"],
    ),
    "symlink loop as data file": (
        lambda d: _train(d, _recipe(d, data__train=str(_symlink_loop(d)))),
        ["symbolic link", "loop"],
    ),
    "broken symlink as data file": (
        lambda d: ((d / "gone.csv").symlink_to(d / "nowhere.csv"), _train(d, _recipe(d, data__train="gone.csv")))[1],
        ["leads nowhere"],
    ),
    "--set value not YAML": (lambda d: _train(d, _recipe(d), "--set", "train.lr=[1,"), ["not valid YAML", "train.lr"]),
    "--set value with a tag": (
        lambda d: _train(d, _recipe(d), "--set", "train.lr=!!python/name:os.system"),
        ["not valid YAML"],
    ),
    "--set into a number": (lambda d: _train(d, _recipe(d), "--set", "train.lr.x=1"), ["train.lr", "valid number"]),
    "negative seed": (lambda d: _train(d, _recipe(d, train__seed=-1)), ["train.seed", "greater than or equal to 0"]),
    "seed past NumPy's range": (lambda d: _train(d, _recipe(d), "--set", "train.seed=99999999999"), ["train.seed"]),
    "predict: config.json is {}": (
        lambda d: ["predict", _damage(d, "model/config.json", "{}"), d / "x.csv", "-o", d / "p.csv"],
        ["cannot be loaded", "damaged"],
    ),
    "predict: truncated safetensors": (
        lambda d: ["predict", _damage(d, "model/model.safetensors", b"\x08\x00\x00"), d / "x.csv", "-o", d / "p.csv"],
        ["cannot be loaded"],
    ),
    "predict: planted pickle model": (
        lambda d: (
            plant_pickle(_damage(d, "model/model.safetensors", None) / "model" / "pytorch_model.bin", d / "pwned"),
            ["predict", d / "run", d / "x.csv", "-o", d / "p.csv"],
        )[1],
        ["cannot be loaded"],
    ),
    "predict: model/ deleted": (
        lambda d: ["predict", _damage(d, "model", None), d / "x.csv", "-o", d / "p.csv"],
        ["saved model is missing", "config.json"],
    ),
    "predict: few-shot head.json damaged": (
        lambda d: (
            _as_few_shot(_finished(d)),
            (d / "run" / "model" / "head.json").write_text("[1, 2]"),
            ["predict", d / "run", d / "x.csv", "-o", d / "p.csv"],
        )[2],
        ["head.json", "damaged"],
    ),
    "predict: run.json truncated": (
        lambda d: ["predict", _damage(d, "run.json", '{"status": "fini'), d / "x.csv", "-o", d / "p.csv"],
        ["run.json is damaged"],
    ),
    "predict: recipe.yaml is a list": (
        lambda d: ["predict", _damage(d, "recipe.yaml", "- a\n- b\n"), d / "x.csv", "-o", d / "p.csv"],
        ["recipe.yaml is damaged"],
    ),
    "predict: input lacks the text column": (
        lambda d: (
            _finished(d),
            (d / "in.csv").write_text("body,id\nhello,1\n"),  # two columns: which one holds the text is a guess
            ["predict", d / "run", d / "in.csv", "-o", d / "p.csv"],
        )[2],
        ["no column 'text'", "--text-column"],
    ),
    "eval: label column missing names the flag": (
        lambda d: (
            _finished(d),
            (d / "e.csv").write_text("text,lab\na,positive\n"),
            ["eval", d / "run", "--data", d / "e.csv"],
        )[2],
        ["--label-column", "lab"],
    ),
    "eval: labels the model lacks": (
        lambda d: (
            _finished(d),
            (d / "e.csv").write_text("text,label\na,neutral\n"),
            ["eval", d / "run", "--data", d / "e.csv"],
        )[2],
        ["neutral", "not among"],
    ),
    "resume: run.json truncated": (
        lambda d: (
            fake_run(d, "interrupted"),
            (d / "run" / "run.json").write_text("{"),
            [
                "train",
                "--resume",
                d / "run",
            ],
        )[2],
        ["damaged"],
    ),
    "resume: not a run": (
        lambda d: (fake_run(d), (d / "run" / "run.json").unlink(), ["train", "--resume", d / "run"])[2],
        ["not a tunesmith run directory"],
    ),
    "continual.json truncated": (
        lambda d: (
            fake_run(d),
            (d / "run" / "continual.json").write_text('{"current": 1'),
            ["runs", "versions", d / "run"],
        )[2],
        ["continual.json is damaged"],
    ),
    "versions of a non-continual run": (lambda d: ["runs", "versions", fake_run(d)], ["not a continual run"]),
    "checkpoint is random bytes": (
        lambda d: (
            (interrupted_run(d) / "checkpoint.pt").write_bytes(os.urandom(64)),
            ["train", "--resume", d / "run"],
        )[1],
        ["checkpoint.pt", "damaged"],
    ),
    # ------------------------------------------------------------------ misleading messages
    "data file is a FIFO": (lambda d: _train(d, _recipe(d, data__train=str(_fifo(d)))), ["not a regular file"]),
    "recipe is a folder": (lambda d: ((d / "rdir").mkdir(), ["train", d / "rdir"])[1], ["is a folder"]),
    "recipe is /dev/zero": (lambda d: ["train", "/dev/zero"], ["not a regular file"]),
    "recipe over 1 MB": (lambda d: ["train", _recipe_file(d, "# " + "x" * 1_100_000 + "\n")], ["not a recipe"]),
    "recipe validate on a folder": (lambda d: ["recipe", "validate", d], ["is a folder"]),
    "unknown method names the methods": (
        lambda d: _train(d, _recipe(d, method={"name": "dpo"})),
        ["unknown method 'dpo'", "supervised", "few_shot"],
    ),
    "unknown method shorthand": (lambda d: _train(d, _recipe(d, method="dpo")), ["unknown method 'dpo'"]),
    "stage with an unknown method": (
        lambda d: _train(d, {**_recipe(d), "stages": [{"name": "a", "method": "dpo"}]}),
        ["unknown method 'dpo'"],
    ),
    "lora key in the train section": (
        lambda d: _train(d, _recipe(d, train__lora_r=8)),
        ["train.lora_r", "method.lora.r"],
    ),
    "early-stopping key flattened": (
        lambda d: _train(d, _recipe(d, train__early_stopping_patience=3)),
        ["train.early_stopping.patience"],
    ),
    "wrong type for data.train": (lambda d: _train(d, _recipe(d, data__train=["a.csv"])), ["data.train"]),
    "unknown precision": (lambda d: _train(d, _recipe(d, train__precision="fp8")), ["train.precision", "fp8"]),
    "unknown early-stopping metric": (
        lambda d: _train(d, _recipe(d, train__early_stopping={"metric": "auc"})),
        ["train.early_stopping.metric"],
    ),
    "experiences without continual": (
        lambda d: _train(d, {**_recipe(d), "experiences": [{"name": "a", "data": {"train": "train.csv"}}]}),
        ["continual"],
    ),
    "empty stages list": (lambda d: _train(d, {**_recipe(d), "stages": []}), ["stages"]),
    "validation_split out of range": (
        lambda d: _train(d, _recipe(d, data__validation_split=0.9)),
        ["data.validation_split"],
    ),
    "min_examples_per_class zero": (
        lambda d: _train(d, _recipe(d, data__min_examples_per_class=0)),
        ["data.min_examples_per_class"],
    ),
    "filter names a missing column": (
        lambda d: _train(d, _recipe(d, data__filter={"domain": "x"})),
        ["names column 'domain'"],
    ),
    "text is a number in jsonl": (
        lambda d: _train_on(d, "x.jsonl", "\n".join(json.dumps({"text": i, "label": "ab"[i % 2]}) for i in range(6))),
        ["non-text"],
    ),
    "-o under a file": (
        lambda d: ((d / "f.txt").write_text("x"), _train(d, _recipe(d), "-o", d / "f.txt" / "run"))[1],
        ["f.txt"],
    ),
    "--resume with another -o": (
        lambda d: (fake_run(d, "interrupted"), ["train", "--resume", d / "run", "-o", d / "other"])[1],
        ["drop -o"],
    ),
    "--compare-direct without stages": (
        lambda d: _train(d, _recipe(d), "--compare-direct"),
        ["--compare-direct", "stages"],
    ),
    "chat on a classification run": (lambda d: ["chat", fake_run(d)], ["classification run"]),
    "generate on a classification run": (
        lambda d: ((d / "p.csv").write_text("prompt\nhi\n"), ["generate", fake_run(d), d / "p.csv", "-o", d / "o.csv"])[
            1
        ],
        ["classification run"],
    ),
    "predict on a generation run": (
        lambda d: (
            (d / "p.csv").write_text("text\nhi\n"),
            ["predict", fake_run(d, task="generation"), d / "p.csv", "-o", d / "o.csv"],
        )[1],
        ["generation run"],
    ),
    "export an unfinished run": (lambda d: ["export", fake_run(d, "interrupted")], ["not finished"]),
    "runs list of a file": (lambda d: ((d / "f").write_text("x"), ["runs", "list", d / "f"])[1], ["not a folder"]),
    "update a non-continual run": (
        lambda d: (
            fake_run(d),
            (d / "n.csv").write_text("text,label\na,b\n"),
            ["update", d / "run", "--data", d / "n.csv"],
        )[2],
        ["not a continual run"],
    ),
    "a data file where the recipe goes": (
        lambda d: ((d / "train.csv").write_text("text,label\na,b\n"), ["train", d / "train.csv"])[1],
        ["data file, not a recipe", "data.train: train.csv"],
    ),
    "entity data under a classification recipe": (
        lambda d: _train_on(d, "ner.jsonl", json.dumps({"tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]}) + "\n"),
        ["no column 'text'", "words and their tags", "task: token_classification"],
    ),
    "a folder of runs where one run goes": (
        lambda d: (fake_run(d), (d / "p.csv").write_text("text\nhi\n"), ["predict", d, d / "p.csv", "-o", d / "o.csv"])[
            2
        ],
        ["not a tunesmith run directory", "it holds runs: pass one of them"],
    ),
    "models pull an unknown alias": (lambda d: ["models", "pull", "minilm-l7"], ["Unknown model alias", "minilm-l6"]),
    # JSON nested past Python's stack: json raises RecursionError, not a ValueError
    "JSONL nested too deeply": (
        lambda d: _train_on(d, "deep.jsonl", '{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "a"}\n'),
        ["deep.jsonl:1", "nested too deeply"],
    ),
    "JSON nested too deeply": (
        lambda d: _train_on(d, "deep.json", "[" * 100_000 + "]" * 100_000),
        ["deep.json", "nested too deeply"],
    ),
    "a messages cell nested too deeply": (
        lambda d: (
            pd.DataFrame({"messages": ["[" * 100_000 + "]" * 100_000]}).to_csv(d / "chat.csv", index=False),
            ["data", "check", d / "chat.csv", "--task", "generation"],
        )[1],
        ["messages", "nested too deeply"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_clear_message(tmp_path, case):
    assert_clear_message(tmp_path, *CASES[case])


def test_a_misspelt_model_is_said_as_itself_not_as_a_data_problem(tmp_path):
    args = _train(tmp_path, {**_recipe(tmp_path), "model": {"name": "tiny-bertt"}})
    assert_clear_message(tmp_path, lambda d: args, ["Unknown model 'tiny-bertt'", "Did you mean 'tiny-bert'"])
    from typer.testing import CliRunner

    from tunesmith.cli import app

    printed = " ".join(CliRunner().invoke(app, [str(a) for a in args]).output.split())
    assert "data check" not in printed and "Fix the data" not in printed
