"""serve --collect, /v1/feedback, /metrics and live version swaps, on a tiny continual run."""

import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

import tunesmith
from tests.test_continual import _recipe, _stream
from tunesmith.errors import TunesmithError
from tunesmith.recipe import Experience
from tunesmith.serve import create_app

pytestmark = pytest.mark.slow


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
        deep = web.post("/v1/feedback", content=b"[" * 100_000 + b"]" * 100_000)  # RecursionError, not a 500
        assert deep.status_code == 400 and "not JSON" in deep.json()["error"]["message"]
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
    assert 'tunesmith_requests_total{route="/v1/classify",status="200"} 1.0' in metrics
    assert 'tunesmith_requests_total{route="/v1/feedback",status="400"} 5.0' in metrics
    assert 'tunesmith_request_seconds_count{route="/v1/feedback"} 8.0' in metrics


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


def _send_feedback(web, rows, flip=False):
    """Ask the server about each text, then tell it the true label (or the opposite one)."""
    texts = [r["text"] for r in rows]
    answer = web.post("/v1/classify", json={"model": "run", "input": texts}).json()
    for item, row in zip(answer["data"], rows):
        label = row["label"] if not flip else {"positive": "negative", "negative": "positive"}[row["label"]]
        assert web.post("/v1/feedback", json={"id": item["id"], "label": label}).status_code == 200


def _copy(continual_run, tmp_path):
    import shutil

    source, files = continual_run
    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run", files


def test_feedback_from_new_traffic_trains_a_promoted_version_that_the_server_swaps_in(continual_run, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from tunesmith.cli import app

    run_dir, files = _copy(continual_run, tmp_path)
    rows = pd.read_csv(files[("second", "train")]).to_dict("records")
    with _client(run_dir, collect=tmp_path / "store", watch_s=0.2) as web:
        _send_feedback(web, rows)
        too_few = CliRunner().invoke(
            app, ["update", str(run_dir), "--from-feedback", str(tmp_path / "store"), "--min-examples", "500"]
        )
        assert too_few.exit_code == 2 and "waits for --min-examples 500" in too_few.output
        done = CliRunner().invoke(
            app, ["loop", str(run_dir), "--collect", str(tmp_path / "store"), "--every", "40", "--once"]
        )
        assert done.exit_code == 0, done.output
        assert "promoted" in done.output and "version 2 is current" in done.output
        gate = json.loads((run_dir / "versions" / "v2" / "gate.json").read_text())
        assert gate["promoted"] and gate["new_after"] > gate["new_before"] and gate["forgetting"] <= 0.01
        deadline = time.time() + 60
        while web.post("/v1/classify", json={"model": "run", "input": "x"}).json()["version"] != 2:
            assert time.time() < deadline, "the server did not swap in version 2"
            time.sleep(0.2)
        again = CliRunner().invoke(
            app, ["loop", str(run_dir), "--collect", str(tmp_path / "store"), "--every", "40", "--once"]
        )
        assert again.exit_code == 0 and "training" not in again.output  # that feedback is used up
        shown = CliRunner().invoke(app, ["monitor", str(tmp_path / "store"), "--json"])
        summary = {s["version"]: s for s in json.loads(shown.output)}
        assert summary[1]["feedback"] == 80 and summary[1]["requests"] >= 80 and summary[2]["requests"] >= 1
        assert 0 <= summary[1]["feedback_agreement"] <= 1 and set(summary[1]["label_shares"]) <= {
            "positive",
            "negative",
        }


def test_feedback_that_contradicts_the_original_data_is_not_promoted(continual_run, tmp_path):
    import json

    import pandas as pd

    from tunesmith.methods.continual_feedback import update_from_feedback

    run_dir, files = _copy(continual_run, tmp_path)
    rows = pd.read_csv(files[("first", "train")]).to_dict("records")
    with _client(run_dir, collect=tmp_path / "store") as web:
        _send_feedback(web, rows, flip=True)  # the original domain, every label the other way round
    result = update_from_feedback(run_dir, tmp_path / "store", min_examples=40)
    gate = result["gate"]
    assert not gate["promoted"] and gate["reasons"]  # it forgot the original data, or did not learn the new
    state = json.loads((run_dir / "continual.json").read_text())
    assert state["current"] == 1 and state["feedback_seq"] == 80
    assert json.loads((run_dir / "versions" / "rejected-1" / "gate.json").read_text())["reasons"] == gate["reasons"]
    assert not (run_dir / "versions" / "v2").exists()
    # the rejected update's held-out rows were never trained on: the next gate reads them too
    with _client(run_dir, collect=tmp_path / "store") as web:
        _send_feedback(web, rows[:40])
    second = update_from_feedback(run_dir, tmp_path / "store", min_examples=40)["gate"]
    assert gate["heldout_rows"] == 16 and second["heldout_rows"] == 16 + 8


def test_clients_running_through_a_swap_all_get_answers(continual_run, tmp_path):
    import threading

    import uvicorn

    from tests.conftest import free_port
    from tunesmith.methods.continual import update_run

    run_dir, files = _copy(continual_run, tmp_path)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app([run_dir], watch_s=0.2), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    import httpx

    seen, failures, stop = [], [], threading.Event()

    def client():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
            while not stop.is_set():
                reply = web.post("/v1/classify", json={"model": "run", "input": "a product good 7"})
                (seen if reply.status_code == 200 else failures).append(reply.json().get("version", reply.text))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        second = {"train": str(files[("second", "train")]), "validation": str(files[("second", "validation")])}
        update_run(run_dir, Experience(name="second", data=second))
        deadline = time.time() + 60
        while 2 not in seen[-5:] and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for c in clients:
            c.join()
        server.should_exit = True
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2 and seen.count(1) > 0 and seen.count(2) > 0


def test_a_loop_killed_mid_update_finishes_one_update_when_started_again(continual_run, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    import pandas as pd

    run_dir, files = _copy(continual_run, tmp_path)
    rows = pd.read_csv(files[("second", "train")]).to_dict("records")
    with _client(run_dir, collect=tmp_path / "store") as web:
        _send_feedback(web, rows)
    command = [sys.executable, "-m", "tunesmith", "loop", str(run_dir), "--collect", str(tmp_path / "store")]
    command += ["--every", "40", "--once"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in first.stdout:  # killed once training has begun
        if "training the next version" in line:
            time.sleep(1.0)
            first.send_signal(signal.SIGKILL)
            break
    first.wait()
    assert json.loads((run_dir / "continual.json").read_text())["current"] == 1
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    state = json.loads((run_dir / "continual.json").read_text())
    assert state["current"] == 2 and state["lineage"] == [1, 2] and state["feedback_seq"] == 80
    assert sorted(p.name for p in (run_dir / "versions").iterdir()) == ["v1", "v2"]


def test_inputs_unlike_the_training_texts_are_counted_as_far(continual_run, tmp_path):
    import pandas as pd

    run_dir, files = continual_run
    familiar = pd.read_csv(files[("first", "validation")]).text.tolist()
    strange = [f"quarterly tax filing deadline {i} invoice ledger audit" for i in range(24)]
    with _client(run_dir, collect=tmp_path / "store") as web:
        near = web.post("/v1/classify", json={"model": "run", "input": familiar}).json()["data"]
        far = web.post("/v1/classify", json={"model": "run", "input": strange}).json()["data"]
        metrics = web.get("/metrics").text
    share = lambda rows: sum(r["far_from_training"] for r in rows) / len(rows)  # noqa: E731
    assert share(near) <= 0.25 and share(far) >= 0.75, (share(near), share(far))
    assert f'tunesmith_drift_checked_total{{model="run"}} {len(familiar) + len(strange)}.0' in metrics
    from tunesmith.runs.collect import Store

    (summary,) = Store(tmp_path / "store", readonly=True).summary()
    assert summary["far_from_training"] == pytest.approx(
        (sum(r["far_from_training"] for r in near) + sum(r["far_from_training"] for r in far)) / (len(near) + len(far))
    )


def _update_from_served_feedback(run_dir, tmp_path, texts, feedback: list[dict]):
    """Serve the run with --collect, ask about the texts, send one feedback body per text, update from it."""
    from tunesmith.methods.continual_feedback import update_from_feedback

    with _client(run_dir, collect=tmp_path / "store") as web:
        answer = web.post("/v1/classify", json={"model": "run", "input": texts}).json()
        for item, body in zip(answer["data"], feedback):
            sent = web.post("/v1/feedback", json={"id": item["id"], **body})
            assert sent.status_code == 200, sent.json()
    return update_from_feedback(run_dir, tmp_path / "store", min_examples=len(texts), holdout=0.25)


def test_multi_label_feedback_becomes_an_experience_in_the_runs_columns(tmp_path):
    import json

    from tests.test_continual_tasks import METHOD, TRAIN, multilabel_files, topic_rows

    files = multilabel_files(tmp_path)
    data = {"train": str(files[("reviews", "train")]), "validation": str(files[("reviews", "validation")])}
    recipe = {
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "strategy": ["replay"]},
        "train": TRAIN,
        "data": {"label_column": "labels", "label_separator": "|"},
        "experiences": [{"name": "reviews", "data": data}],
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    rows = topic_rows(["praise", "complaint"], 40, 7).to_dict("records")
    feedback = [{"labels": [label for label in r["labels"].split("|") if label]} for r in rows]
    result = _update_from_served_feedback(run_dir, tmp_path, [r["text"] for r in rows], feedback)
    trained = [json.loads(line) for line in (run_dir / "feedback" / "1" / "train.jsonl").read_text().splitlines()]
    assert len(trained) == 30 and {r["labels"] for r in trained} <= {"", "praise", "complaint", "complaint|praise"}
    assert result["gate"]["heldout_rows"] == 10 and isinstance(result["gate"]["promoted"], bool)


def test_entity_feedback_becomes_spans_the_tagger_trains_on(tmp_path):
    import json

    from tests.test_continual_tasks import METHOD, TRAIN, tagged

    data = {}
    for split, n, offset in (("train", 200, 0), ("validation", 50, 1)):
        path = tmp_path / f"items_{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in tagged(["ITEM"], n, offset)))
        data[split] = str(path)
    recipe = {
        "task": "token_classification",
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "strategy": "replay"},
        "train": TRAIN,
        "experiences": [{"name": "items", "data": data}],
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    texts, feedback = [], []
    for row in tagged(["ITEM"], 40, 99):
        text, spans = "", []
        for word, tag in zip(row["tokens"], row["tags"]):
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            if tag == "B-ITEM":
                spans.append({"start": start, "end": start + len(word), "label": "ITEM"})
        texts.append(text)
        feedback.append({"entities": spans})
    with _client(run_dir, collect=tmp_path / "bad") as web:
        asked = web.post("/v1/classify", json={"model": "run", "input": texts[:1]}).json()["data"][0]
        wrong = web.post(
            "/v1/feedback", json={"id": asked["id"], "entities": [{"start": 0, "end": 3, "label": "DRUG"}]}
        )
        assert wrong.status_code == 400 and "'DRUG' is not an entity type" in wrong.json()["error"]["message"]
        # spans an update could not tag are refused here, not found later by the update they would stop
        end = len(texts[0])
        for spans, says in (
            ([{"start": end, "end": end + 5, "label": "ITEM"}], f"0 <= start < end <= {end}"),
            ([{"start": 0, "end": end, "label": "ITEM"}, {"start": 0, "end": 2, "label": "ITEM"}], "overlaps"),
        ):
            refused = web.post("/v1/feedback", json={"id": asked["id"], "entities": spans})
            assert refused.status_code == 400 and says in refused.json()["error"]["message"]
        inside = web.post(
            "/v1/feedback", json={"id": asked["id"], "entities": [{"start": 0, "end": end, "label": "ITEM"}]}
        )
        assert inside.status_code == 200
    result = _update_from_served_feedback(run_dir, tmp_path, texts, feedback)
    trained = [json.loads(line) for line in (run_dir / "feedback" / "1" / "train.jsonl").read_text().splitlines()]
    assert len(trained) == 30 and all(isinstance(r["entities"], list) for r in trained)
    assert result["gate"]["metric"] == "f1" and result["gate"]["heldout_rows"] == 10


def test_runs_rollback_goes_back_one_version_and_refuses_at_the_first(continual_run, tmp_path):
    import json

    from typer.testing import CliRunner

    from tunesmith.cli import app
    from tunesmith.methods.continual import update_run

    run_dir, files = _copy(continual_run, tmp_path)
    first = CliRunner().invoke(app, ["runs", "rollback", str(run_dir)])
    assert first.exit_code == 2 and "first version" in first.output
    second = {"train": str(files[("second", "train")]), "validation": str(files[("second", "validation")])}
    update_run(run_dir, Experience(name="second", data=second))
    back = CliRunner().invoke(app, ["runs", "rollback", str(run_dir)])
    assert back.exit_code == 0 and "version 1 is current again" in back.output
    assert json.loads((run_dir / "continual.json").read_text())["current"] == 1


def test_the_collection_keeps_at_most_its_row_limit_dropping_the_oldest_with_their_feedback(tmp_path):
    from tunesmith.runs.collect import Store

    store = Store(tmp_path, max_rows=100)
    record = lambda i: store.record("m", 1, "classification", [(f"text {i}", {"label": "a"}, None)])[0]  # noqa: E731
    ids = [record(0)]
    store.add_feedback(ids[0], "m", "label", "a")
    ids += [record(i) for i in range(1, 150)]
    store.add_feedback(ids[-1], "m", "label", "a")
    kept = [r["input"] for r in store.requests("m")]
    assert len(kept) <= 100 and kept[-1] == "text 149" and "text 0" not in kept
    assert [f["input"] for f in store.feedback("m")] == ["text 149"]  # the dropped request's feedback went with it
    with pytest.raises(sqlite3.IntegrityError):
        store.record("m", 1, "classification", [("again", {}, None)], ids=[ids[-1]])  # an id that exists
    assert store.record("m", 1, "classification", [("after", {}, None)])  # no transaction left open


def test_regression_feedback_values_train_and_gate_a_new_version(tmp_path):
    import json

    from tests.test_continual_tasks import METHOD, TRAIN
    from tests.test_regression import score_rows, write_sets

    paths = write_sets(tmp_path)
    recipe = {
        "task": "regression",
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "strategy": ["replay"]},
        "train": TRAIN,
        "experiences": [{"name": "scores", "data": paths}],
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    rows = score_rows(40, 9).to_dict("records")
    with _client(run_dir, collect=tmp_path / "bad") as web:
        asked = web.post("/v1/classify", json={"model": "run", "input": ["good bad"]}).json()["data"][0]
        wrong = web.post("/v1/feedback", json={"id": asked["id"], "value": "high"})
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "value"
    result = _update_from_served_feedback(
        run_dir, tmp_path, [r["text"] for r in rows], [{"value": r["label"]} for r in rows]
    )
    trained = [json.loads(line) for line in (run_dir / "feedback" / "1" / "train.jsonl").read_text().splitlines()]
    assert len(trained) == 30 and all(isinstance(r["label"], float) for r in trained)
    gate = result["gate"]
    assert gate["metric"] == "r2" and gate["heldout_rows"] == 10 and gate["old_before"] > 0.5
    assert gate["promoted"] == (gate["new_after"] > gate["new_before"] and gate["forgetting"] <= 0.01)


def test_agreement_compares_what_can_match_and_leaves_out_what_cannot():
    """A label, a label set or the entities (type and offsets) agree or not; a regression value, a corrected
    generation or a rating has no exact match, and is left out of the share rather than counted as wrong."""
    import json

    from tunesmith.runs.collect import _signals, agrees

    found = {"entities": [{"type": "person", "text": "Ann", "start": 0, "end": 3, "score": 0.9}]}
    assert agrees("entities", [{"start": 0, "end": 3, "label": "person"}], found) is True
    assert agrees("entities", [{"start": 0, "end": 3, "label": "location"}], found) is False
    assert agrees("entities", [], {"entities": []}) is True  # nothing to find, nothing found
    assert agrees("labels", ["b", "a"], {"labels": ["a", "b"]}) is True
    assert agrees("label", "a", {"label": "b"}) is False
    assert agrees("value", 3.0, {"value": 3.0}) is None and agrees("rating", 5, "an answer") is None
    rows = [
        (json.dumps(found), None, "entities", json.dumps([{"start": 0, "end": 3, "label": "person"}])),
        (json.dumps({"entities": []}), None, "entities", json.dumps([{"start": 4, "end": 9, "label": "group"}])),
        (json.dumps({"value": 2.0}), None, "value", json.dumps(2.5)),
    ]
    summary = _signals(rows)
    assert summary["feedback"] == 3 and summary["feedback_agreement"] == 0.5
    assert _signals(rows[2:])["feedback_agreement"] is None  # shown as "—", not 0%


def test_entity_corrections_that_do_not_fit_their_text_are_left_out_of_an_update(tmp_path, caplog):
    """A store written before the server checked spans may hold corrections no update can tag: they are left out
    with a warning, and the rest still trains (one bad row must not stop every update)."""
    from tests.test_continual_tasks import METHOD, TRAIN, tagged_experiences
    from tunesmith.methods.continual_feedback import _pending
    from tunesmith.runs.collect import Store

    recipe = {
        "task": "token_classification",
        "model": "tiny-bert",
        "eval": {"baseline": "none"},
        "method": {**METHOD, "strategy": "replay"},
        "train": {**TRAIN, "epochs": 1},
        "experiences": tagged_experiences(tmp_path, (("items", ["ITEM"], 0),), 40, 10),
    }
    run_dir = tunesmith.run(recipe, output_dir=tmp_path / "run").run_dir
    store = Store(tmp_path / "store")
    text = "the movie is good"
    ids = store.record("run", 1, "classify", [(text, {"entities": []}, None)] * 4)
    spans = [
        [{"start": 4, "end": 9, "label": "ITEM"}],  # fits
        [{"start": 4, "end": 90, "label": "ITEM"}],  # past the text
        [{"start": 4, "end": 9, "label": "ITEM"}, {"start": 5, "end": 7, "label": "ITEM"}],  # overlapping
        ["not a span"],
    ]
    for ident, value in zip(ids, spans):
        store.add_feedback(ident, "run", "entities", value)
    store.close()
    with caplog.at_level("WARNING"):
        rows, _, _ = _pending(run_dir, tmp_path / "store", None)
    assert [r["value"] for r in rows] == [spans[0]]
    assert "3 entity correction(s) left out" in caplog.text
