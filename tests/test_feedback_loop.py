"""serve --collect, /v1/feedback, /metrics and live version swaps, on a tiny continual run."""

import sqlite3

import pytest
from fastapi.testclient import TestClient

import tunesmith
from tests.test_continual import _recipe, _stream
from tunesmith.errors import TunesmithError
from tunesmith.recipe import Experience
from tunesmith.serve import create_app


@pytest.fixture(scope="module")
def continual_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    files = _stream(d)
    recipe = _recipe(files, "replay")
    recipe["train"]["epochs"] = 3
    recipe["experiences"] = recipe["experiences"][:1]
    run = tunesmith.run(recipe, output_dir=d / "run")
    return run.run_dir, files


def _client(run_dir, **options):
    return TestClient(create_app([run_dir], **options), base_url="http://127.0.0.1")


def test_nothing_is_recorded_without_collect(continual_run, tmp_path):
    run_dir, _ = continual_run
    with _client(run_dir) as web:
        answer = web.post("/v1/classify", json={"model": "run", "input": ["a movie good 1"]}).json()
        assert "id" not in answer["data"][0] and answer["version"] == 1
        refused = web.post("/v1/feedback", json={"id": "x", "label": "positive"})
        assert refused.status_code == 404 and "--collect" in refused.json()["error"]["message"]
    assert not list(tmp_path.iterdir())


def test_collect_records_each_input_and_feedback_is_checked(continual_run, tmp_path):
    run_dir, _ = continual_run
    with _client(run_dir, collect=tmp_path / "store") as web:
        texts = ["a movie good 1", "the movie bad 2", "it movie good 3"]
        answer = web.post("/v1/classify", json={"model": "run", "input": texts}).json()
        ids = [item["id"] for item in answer["data"]]
        rows = (
            sqlite3.connect(tmp_path / "store" / "collect.sqlite3")
            .execute("SELECT id, input, version FROM requests ORDER BY seq")
            .fetchall()
        )
        assert [(r[0], r[1], r[2]) for r in rows] == [(i, f'"{t}"', 1) for i, t in zip(ids, texts)]
        for body, status, says in (
            ({"id": "nope", "label": "positive"}, 404, "No recorded request"),
            ({"id": ids[0], "label": "postive"}, 400, "'postive' is not a label of this run"),
            ({"id": ids[0], "value": 0.5}, 400, "Send exactly one of label"),
            ({"id": ids[0], "label": 3}, 400, "label names"),
            ({"id": ids[0]}, 400, "Send exactly one of label"),
        ):
            refused = web.post("/v1/feedback", json=body)
            assert refused.status_code == status and says in refused.json()["error"]["message"], refused.json()
        agreed = answer["data"][0]["label"]
        assert web.post("/v1/feedback", json={"id": ids[0], "label": agreed}).status_code == 200
        other = next(label for label in ("positive", "negative") if label != answer["data"][1]["label"])
        assert web.post("/v1/feedback", json={"id": ids[1], "label": other}).status_code == 200
        metrics = web.get("/metrics").text
    assert 'tunesmith_feedback_checked_total{model="run",version="1"} 2.0' in metrics
    assert 'tunesmith_feedback_agreed_total{model="run",version="1"} 1.0' in metrics
    assert f'tunesmith_predicted_label_total{{label="{agreed}",model="run"}}' in metrics
    assert 'tunesmith_training_label_share{label="positive",model="run"} 0.5' in metrics
    assert "tunesmith_batch_size_count" in metrics and 'tunesmith_model_version{model="run"} 1.0' in metrics


def test_a_database_file_tunesmith_did_not_write_is_left_alone(continual_run, tmp_path):
    run_dir, _ = continual_run
    (tmp_path / "store").mkdir()
    theirs = sqlite3.connect(tmp_path / "store" / "collect.sqlite3")
    theirs.execute("CREATE TABLE orders (id INTEGER)")
    theirs.commit()
    theirs.close()
    before = (tmp_path / "store" / "collect.sqlite3").read_bytes()
    with pytest.raises(TunesmithError, match="not written by tunesmith"):
        create_app([run_dir], collect=tmp_path / "store")
    assert (tmp_path / "store" / "collect.sqlite3").read_bytes() == before


def test_a_new_version_is_swapped_in_without_a_restart_and_a_rollback_is_followed(continual_run, tmp_path):
    import shutil

    from tunesmith.methods.continual import rollback, update_run

    source, files = continual_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    with _client(run_dir, watch_s=None) as web:
        first = web.post("/v1/classify", json={"model": "run", "input": "a product good 5"}).json()
        assert first["version"] == 1
        second = {"train": str(files[("second", "train")]), "validation": str(files[("second", "validation")])}
        update_run(run_dir, Experience(name="second", data=second))
        assert web.post("/admin/reload").json() == {"swapped": ["run"]}
        after = web.post("/v1/classify", json={"model": "run", "input": "a product good 5"}).json()
        assert after["version"] == 2
        assert web.get("/v1/models").json()["data"][0]["version"] == 2
        rollback(run_dir, 1)
        assert web.post("/admin/reload").json() == {"swapped": ["run"]}
        assert web.post("/v1/classify", json={"model": "run", "input": "x"}).json()["version"] == 1
        assert 'tunesmith_swaps_total{model="run"} 2.0' in web.get("/metrics").text
