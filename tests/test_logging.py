"""The library logs through `logging` and never prints; the CLI shows each warning once, at the chosen verbosity."""

import io
import logging

import pandas as pd
import yaml
from typer.testing import CliRunner

import tunesmith
from tunesmith.cli import app
from tunesmith.log import OnceFilter, reader_warnings

runner = CliRunner()


def test_the_once_filter_passes_a_repeated_warning_once_and_every_info_line():
    stream = io.StringIO()
    handler = tunesmith.log.show(logging.INFO, stream)
    logger = logging.getLogger("tunesmith.test")
    for _ in range(3):
        logger.warning("tuned is worse than base")
        logger.info("epoch done")
    logger.warning("another finding")
    lines = stream.getvalue().splitlines()
    assert (
        lines.count("tuned is worse than base") == 1 and lines.count("epoch done") == 3 and "another finding" in lines
    )
    assert any(isinstance(f, OnceFilter) for f in handler.filters)


def test_reader_warnings_are_said_only_when_the_data_check_did_not_run(logged):
    reader_warnings(["test.csv: 3 text(s) also appear in the training data"], "stop")
    assert "also appear" not in logged()
    reader_warnings(["test.csv: 3 text(s) also appear in the training data"], "off")
    assert "also appear" in logged()


def _overlapping(tmp_path, toy_data):
    train = pd.read_csv(toy_data["paths"]["train"])
    pd.concat([pd.read_csv(toy_data["paths"]["test"]), train.head(4)]).to_csv(toy_data["paths"]["test"], index=False)
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "r.yaml"


def test_cli_says_a_data_finding_once_and_quiet_keeps_only_warnings(toy_data, tmp_path):
    recipe = _overlapping(tmp_path, toy_data)
    said = runner.invoke(app, ["train", str(recipe), "-o", str(tmp_path / "run")])
    assert said.exit_code == 0, said.output
    text = " ".join(said.output.split())
    assert text.count("also appear in training data") + text.count("also appear in the training data") == 1
    assert "base: accuracy" in text and "base = the model before fine-tuning" in text
    quiet = runner.invoke(app, ["-q", "train", str(recipe), "-o", str(tmp_path / "run2")])
    assert quiet.exit_code == 0, quiet.output
    text = " ".join(quiet.output.split())
    assert "warning:" in text and "base: accuracy" not in text and "steps" not in text


def test_a_message_with_square_brackets_is_printed_as_written(capsys):
    from tunesmith.cli.output import configure

    configure("normal")
    logging.getLogger("tunesmith.test").warning("label(s) ['[bold]urgent', '[/]'] never appear in training data")
    logging.getLogger("tunesmith.test").info("stage 1/2: [red]pretrain")
    printed = capsys.readouterr().err
    assert "['[bold]urgent', '[/]']" in printed and "warning:" in printed and "[red]pretrain" in printed


def test_verbose_and_quiet_together_are_refused():
    done = runner.invoke(app, ["-v", "-q", "env"])
    assert done.exit_code == 2 and "contradict" in done.output


def test_the_once_filter_forgets_its_oldest_warnings_past_its_memory():
    once = OnceFilter()
    for i in range(OnceFilter.MEMORY + 5):
        once.filter(logging.makeLogRecord({"msg": f"prompt {i} was cut", "levelno": logging.WARNING}))
    assert len(once.seen) == OnceFilter.MEMORY and "prompt 0 was cut" not in once.seen
