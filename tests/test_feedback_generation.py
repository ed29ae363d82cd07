"""Feedback on a generation run's answers: corrected answers and good ratings train its next version, gated on
held-out corrections and the original test set, swapped in live, rolled back like a continual run's."""

import json
import random

import pytest
from fastapi.testclient import TestClient

import tunesmith
from tests.test_generation_run import INTENTS, intent_rows, write_jsonl
from tunesmith.errors import TunesmithError
from tunesmith.methods.continual import list_versions, rollback
from tunesmith.methods.continual_feedback import pending, update_from_feedback
from tunesmith.serve import create_app

pytestmark = pytest.mark.slow
# new phrasings of the run's intents: what the served model has not seen, with the answer a reviewer gives
NEW = {"track_order": "has my parcel shipped", "cancel_order": "stop my purchase", "get_refund": "refund me"}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("genfb")
    recipe = {
        "task": "generation",
        "model": {"name": "tiny-llama"},
        "data": {
            "train": write_jsonl(tmp / "train.jsonl", intent_rows(96, 0)),
            "validation": write_jsonl(tmp / "validation.jsonl", intent_rows(16, 1)),
            "test": write_jsonl(tmp / "test.jsonl", intent_rows(12, 2)),
        },
        "method": {"tuning": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "train": {"epochs": 4, "batch_size": 8, "lr": 1e-2, "warmup_ratio": 0.0},
        "eval": {"max_new_tokens": 6},
    }
    return tunesmith.run(recipe, output_dir=tmp / "run").run_dir


def _copy(source, tmp_path):
    import shutil

    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run"


def _client(run_dir, **options):
    return TestClient(create_app([run_dir], **options), base_url="http://127.0.0.1")


def _chat(web, prompt: str, **extra) -> dict:
    body = {"model": "run", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4, **extra}
    answer = web.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _correct(web, n: int, seed: int) -> None:
    """n chats in the new phrasings, each answered, then corrected with the intent's name."""
    rng = random.Random(seed)
    for _ in range(n):
        intent = rng.choice(sorted(NEW))
        asked = _chat(web, f"{NEW[intent]} {rng.choice(['now', 'today', 'thanks', 'asap'])}")
        sent = web.post("/v1/feedback", json={"id": asked["id"], "answer": intent})
        assert sent.status_code == 200, sent.json()


def test_corrected_answers_train_a_version_the_server_swaps_in_and_rollback_is_followed(lora_run, tmp_path):
    run_dir = _copy(lora_run, tmp_path)
    with _client(run_dir, collect=tmp_path / "store", watch_s=None) as web:
        assert _chat(web, "where is my order now")["system_fingerprint"] == "v1"
        _correct(web, 30, 0)
        liked = _chat(web, "please cancel my order today")
        assert web.post("/v1/feedback", json={"id": liked["id"], "rating": 5}).status_code == 200
        disliked = _chat(web, "i want my money back now")
        assert web.post("/v1/feedback", json={"id": disliked["id"], "rating": 1}).status_code == 200
        rows, _ = pending(run_dir, tmp_path / "store")
        assert len(rows) == 32  # 30 corrections and 2 ratings (the low one trains nothing)
        result = update_from_feedback(run_dir, tmp_path / "store", min_examples=30, holdout=0.25, gate=False)
        assert result["continual"]["version"] == 2 and result["gate"]["metric"] == "token_accuracy"
        trained = [json.loads(x) for x in (run_dir / "feedback" / "1" / "train.jsonl").read_text().splitlines()]
        heldout = (run_dir / "feedback" / "1" / "holdout.jsonl").read_text().splitlines()
        assert len(trained) + len(heldout) == 31 and len(heldout) == 8
        answers = {m["messages"][-1]["content"] for m in trained}
        assert answers <= set(INTENTS) and all(m["messages"][-1]["role"] == "assistant" for m in trained)
        assert (run_dir / "versions" / "v1" / "adapter" / "adapter_config.json").is_file()
        assert (run_dir / "versions" / "v2" / "adapter" / "adapter_config.json").is_file()
        assert web.post("/admin/reload").json() == {"swapped": ["run"]}
        assert _chat(web, "stop my purchase thanks")["system_fingerprint"] == "v2"
        current, versions = list_versions(run_dir)
        assert current == 2 and [v["version"] for v in versions] == [1, 2]
        assert versions[0]["accuracies"][0] == pytest.approx(result["gate"]["old_before"])
        rollback(run_dir, 1)
        assert web.post("/admin/reload").json() == {"swapped": ["run"]}
        assert _chat(web, "stop my purchase thanks")["system_fingerprint"] == "v1"
    # the adapter at the top of the run is version 1's again, byte for byte
    top = (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert top == (run_dir / "versions" / "v1" / "adapter" / "adapter_model.safetensors").read_bytes()


def test_the_gate_compares_token_accuracy_on_held_out_corrections_and_the_original_test_set(lora_run, tmp_path):
    run_dir = _copy(lora_run, tmp_path)
    with _client(run_dir, collect=tmp_path / "store", watch_s=None) as web:
        _correct(web, 40, 1)
    result = update_from_feedback(run_dir, tmp_path / "store", min_examples=40, holdout=0.25)
    gate = result["gate"]
    assert gate["heldout_rows"] == 10 and gate["new_after"] > gate["new_before"]  # it learned the corrections
    assert gate["promoted"] == (gate["forgetting"] <= gate["max_forgetting"])
    saved = "v2" if gate["promoted"] else "rejected-1"
    assert json.loads((run_dir / "versions" / saved / "gate.json").read_text())["new_after"] == gate["new_after"]
    # that feedback is used either way: nothing is left for the next update
    with pytest.raises(TunesmithError, match="0 new feedback"):
        update_from_feedback(run_dir, tmp_path / "store", min_examples=1)


def test_chat_feedback_that_makes_no_training_sample_is_refused_clearly(lora_run, tmp_path):
    run_dir = _copy(lora_run, tmp_path)
    with _client(run_dir, collect=tmp_path / "store", watch_s=None) as web:
        for prompt in ("where is my order now", "refund me today"):
            asked = _chat(web, prompt)
            assert web.post("/v1/feedback", json={"id": asked["id"], "rating": 2}).status_code == 200
    with pytest.raises(TunesmithError, match="make 0 training sample"):
        update_from_feedback(run_dir, tmp_path / "store", min_examples=1)
    assert not (run_dir / "versions").exists()  # nothing was started


def test_a_streamed_answer_is_recorded_whole_under_its_stream_id(lora_run, tmp_path):
    from tunesmith.runs.collect import Store

    with _client(lora_run, collect=tmp_path / "store", watch_s=None) as web:
        body = {
            "model": "run",
            "messages": [{"role": "user", "content": "where is my order now"}],
            "max_tokens": 6,
            "stream": True,
        }
        with web.stream("POST", "/v1/chat/completions", json=body) as answer:
            events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: {")]
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
        ident = events[0]["id"]
        assert web.post("/v1/feedback", json={"id": ident, "answer": "track_order"}).status_code == 200
    (recorded,) = Store(tmp_path / "store", readonly=True).requests("run")
    assert recorded["id"] == ident and recorded["answer"] == text and recorded["input"] == body["messages"]
