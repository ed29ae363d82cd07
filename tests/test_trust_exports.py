"""Export folders under hostile conditions: another tool's export.json, another run's export, files the user added
to exports/ before `train --overwrite`, a link planted as exports/, and an export killed (SIGKILL) midway. In every
case the user's bytes stay as they were and the next export works."""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import tunesmith
from tests.hostile import toy_recipe
from tunesmith.cli import app
from tunesmith.export import export_run

runner = CliRunner()


def test_a_folder_with_another_tools_export_json_keeps_every_file(finished, tmp_path):
    other = tmp_path / "deliverables"
    other.mkdir()
    (other / "export.json").write_text(json.dumps({"files": ["report.pdf", "data.csv"], "exported_at": "2026-01-02"}))
    (other / "report.pdf").write_bytes(b"%PDF-1.4 quarterly")
    (other / "data.csv").write_text("a,b\n1,2\n")
    done = runner.invoke(app, ["export", str(finished), "--format", "hf", "-o", str(other)])
    assert done.exit_code == 2 and "not a tunesmith export" in done.output
    assert (other / "report.pdf").read_bytes() == b"%PDF-1.4 quarterly" and (
        other / "data.csv"
    ).read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in other.iterdir()) == ["data.csv", "export.json", "report.pdf"]


def test_an_export_of_another_run_is_not_replaced(finished, tmp_path):
    export_run(finished, "hf", tmp_path / "shared")
    before = {p.name: p.read_bytes() for p in (tmp_path / "shared").iterdir() if p.is_file()}
    other = tmp_path / "other"
    other.mkdir()
    second = tunesmith.run(toy_recipe(other), output_dir=other / "run").run_dir
    done = runner.invoke(app, ["export", str(second), "--format", "hf", "-o", str(tmp_path / "shared")])
    assert done.exit_code == 2 and "export of another run" in done.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "shared").iterdir() if p.is_file()} == before


def test_train_overwrite_keeps_what_the_user_put_in_exports(tmp_path):
    recipe = toy_recipe(tmp_path)
    first = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    export_run(first, "hf")
    (first / "exports" / "hf" / "DEPLOYED.txt").write_text("prod since monday")
    (first / "exports" / "notes").mkdir()
    (first / "exports" / "notes" / "a.md").write_text("keep me")
    tunesmith.run({**recipe, "output": {"overwrite": True}}, output_dir=tmp_path / "run")
    assert (first / "exports" / "hf" / "DEPLOYED.txt").read_text() == "prod since monday"
    assert (first / "exports" / "notes" / "a.md").read_text() == "keep me"
    assert sorted(p.name for p in (first / "exports" / "hf").iterdir()) == [
        "DEPLOYED.txt"
    ]  # the old model's files went


def test_a_link_planted_as_exports_is_not_followed(finished, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (finished / "exports").symlink_to(elsewhere)
    done = runner.invoke(app, ["export", str(finished), "--format", "hf"])
    assert done.exit_code == 2 and "is a link" in done.output
    assert list(elsewhere.iterdir()) == []


KILL = textwrap.dedent("""
    import os, signal, sys
    import tunesmith.export as ex
    from tunesmith.export import hf
    real_write, real_replace = hf.write, os.replace
    moved = []
    def write(*args, **kwargs):
        out = real_write(*args, **kwargs)
        if sys.argv[2] == "writing":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    def replace(a, b):
        real_replace(a, b)
        moved.append(b)
        if len(moved) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    hf.write = write
    if sys.argv[2] == "moving":
        ex.os.replace = replace
    ex.export_run(sys.argv[1], "hf")
""")


@pytest.mark.parametrize("when", ["writing", "moving"])
def test_an_export_killed_midway_keeps_the_earlier_export_and_the_next_one_works(finished, when):
    export_run(finished, "hf")
    folder = finished / "exports" / "hf"
    (folder / "README-ops.txt").write_text("ours, not tunesmith's")
    model = (folder / "model.safetensors").read_bytes()
    killed = subprocess.run(
        [sys.executable, "-c", KILL, str(finished), when], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    if when == "writing":  # killed before anything moved: the earlier export is whole
        assert (folder / "model.safetensors").read_bytes() == model
    record = export_run(finished, "hf")
    names = sorted(p.name for p in folder.iterdir())
    assert not any(n.startswith(".tunesmith-export-") for n in names)
    assert (folder / "README-ops.txt").read_text() == "ours, not tunesmith's" and "README-ops.txt" not in record[
        "files"
    ]
    assert names == sorted([*record["files"], "README-ops.txt", "export.json"])
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(folder).config.num_labels == 2  # the new export loads
