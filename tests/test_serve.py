"""A live server on 127.0.0.1 (uvicorn in a thread, a free port) queried with the official `openai` client and
plain HTTP: chat completions and streaming on a tiny decoder run, /v1/classify on a tiny classifier run (the same
answers as Predictor), the API key, limits and malformed requests as 4xx, unknown models as 404, concurrency."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

import tunesmith
from tests.conftest import free_port, sentiment_rows

KEY = "test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from tunesmith.serve import Limits, create_app

    folder = tmp_path_factory.mktemp("serve")
    for name, n, seed in (("train", 120, 0), ("test", 30, 2)):
        sentiment_rows(n, seed).to_csv(folder / f"{name}.csv", index=False)
    tunesmith.run(
        {
            "model": "tiny-bert",
            "data": {"train": str(folder / "train.csv")},
            "method": {"freeze_embeddings": False},
            "train": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
            "eval": {"baseline": "none"},
        },
        output_dir=folder / "classifier",
    )
    rows = [{"prompt": f"where is my order {i}", "response": "track_order"} for i in range(24)]
    (folder / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tunesmith.run(
        {
            "task": "generation",
            "model": "tiny-llama",
            "data": {"train": str(folder / "chat.jsonl")},
            "method": {"tuning": "full"},
            "train": {"epochs": 1, "batch_size": 8},
            "eval": {"max_samples": 2, "max_new_tokens": 4},
        },
        output_dir=folder / "chat",
    )
    app = create_app(
        [folder / "classifier", folder / "chat"],
        api_key=KEY,
        limits=Limits(max_inputs=8, max_prompt_tokens=200, max_tokens=64, max_body_bytes=20_000),
    )
    port = free_port()
    live = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=live.run, daemon=True)
    thread.start()
    for _ in range(100):
        if live.started:
            break
        time.sleep(0.1)
    yield {"url": f"http://127.0.0.1:{port}", "folder": folder, "app": app}
    live.should_exit = True
    thread.join(timeout=10)


def _post(server, path, payload, key=KEY, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(
            server["url"] + path, content=raw, headers={**headers, "content-type": "application/json"}, timeout=60
        )
    return httpx.post(server["url"] + path, json=payload, headers=headers, timeout=60)


def test_models_health_and_the_api_key(server):
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=server["url"] + "/v1", api_key=KEY)
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"classifier", "chat"}
    assert (
        cards["chat"].model_extra["task"] == "generation"
        and cards["classifier"].model_extra["task"] == "classification"
    )
    assert httpx.get(server["url"] + "/health", headers={"Authorization": f"Bearer {KEY}"}).json()["status"] == "ok"
    assert httpx.get(server["url"] + "/health").status_code == 401
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server["url"] + "/v1", api_key="wrong").models.list()


def test_chat_completion_and_streaming_with_the_openai_client(server):
    from openai import OpenAI

    client = OpenAI(base_url=server["url"] + "/v1", api_key=KEY)
    reply = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "where is my order 3"}], max_tokens=4
    )
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].finish_reason in ("stop", "length")
    assert (
        reply.usage.prompt_tokens > 0
        and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    greedy = tunesmith.Predictor.load(server["folder"] / "chat").generate("where is my order 3", max_new_tokens=4)
    assert reply.choices[0].message.content == greedy  # temperature 0: the same answer as in Python
    pieces = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "where is my order 3"}], max_tokens=4, stream=True
        )
    )
    assert pieces[0].choices[0].delta.role == "assistant" and pieces[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(p.choices[0].delta.content or "" for p in pieces).strip() == greedy
    text = client.completions.create(model="chat", prompt="where is my order 5", max_tokens=4)
    assert text.object == "text_completion" and isinstance(text.choices[0].text, str)


def test_classify_matches_the_predictor(server):
    texts = ["the movie is good 1", "a terrible product 2", "great it is 3"]
    answer = _post(server, "/v1/classify", {"model": "classifier", "input": texts, "top_k": 2}).json()
    probs = tunesmith.Predictor.load(server["folder"] / "classifier").predict_proba(texts)
    classes = tunesmith.Predictor.load(server["folder"] / "classifier").classes_
    for row, expected in zip(answer["data"], probs):
        assert row["label"] == classes[expected.argmax()] and row["score"] == pytest.approx(
            float(expected.max()), abs=1e-6
        )
        assert len(row["top"]) == 2
    single = _post(server, "/v1/classify", {"model": "classifier", "input": "good"}).json()
    assert len(single["data"]) == 1
    unnamed = _post(server, "/v1/classify", {"input": "good"}).json()  # the only classifier served answers
    assert unnamed["model"] == "classifier" and unnamed["data"] == single["data"]


def test_a_request_without_a_model_goes_to_the_routes_only_model_or_is_told_to_name_one():
    from types import SimpleNamespace

    from tunesmith.serve.app import _model
    from tunesmith.serve.errors import ApiError

    chat, a, b = (SimpleNamespace(generative=g, task="t") for g in (True, False, False))
    assert _model({"chat": chat, "a": a}, None, generative=False) is a
    assert _model({"chat": chat, "a": a}, None, generative=True) is chat
    for served, generative, listed in (({"a": a, "b": b}, False, "(a, b)"), ({"a": a}, True, "(none for this route)")):
        with pytest.raises(ApiError) as refused:
            _model(served, None, generative)
        assert refused.value.status == 400 and f"model: name the model to ask {listed}." in str(refused.value)


@pytest.mark.parametrize(
    "payload, raw, status, words",
    [
        ({"model": "nope", "input": "x"}, None, 404, ["Unknown model 'nope'", "classifier"]),
        ({"model": "classifier", "input": ["x"] * 9}, None, 400, ["9 texts", "1 to 8"]),
        ({"model": "classifier"}, None, 400, ["input"]),
        ({"model": "classifier", "input": 5}, None, 400, ["input"]),
        (None, b"{not json", 400, ["not valid JSON"]),
        (None, b"[1, 2]", 400, ["JSON object"]),
        ({"model": "classifier", "input": "x" * 30_000}, None, 413, ["over the limit"]),
        ({"model": "chat", "input": "x"}, None, 400, ["use /v1/chat/completions"]),
    ],
)
def test_bad_classify_requests_are_4xx_in_openai_shape(server, payload, raw, status, words):
    response = _post(server, "/v1/classify", payload, raw=raw)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error["message"]
    assert set(error) >= {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "change, words",
    [
        ({"max_tokens": 65}, ["max_tokens 65", "limit of 64"]),
        ({"messages": [{"role": "user", "content": "order " * 400}]}, ["prompt has", "limit is 200"]),
        ({"messages": [{"role": "robot", "content": "hi"}]}, ["role"]),
        ({"messages": []}, ["messages"]),
        ({"temperature": 5}, ["temperature"]),
        ({"n": 2}, ["n"]),
        ({"model": "classifier"}, ["use /v1/classify"]),
        ({"repetition_penalty": 5}, ["repetition_penalty"]),
        ({"no_repeat_ngram_size": 11}, ["no_repeat_ngram_size"]),
    ],
)
def test_bad_chat_requests_are_4xx(server, change, words):
    payload = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **change}
    response = _post(server, "/v1/chat/completions", payload)
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.json()["error"]["message"]


def test_decoding_fields_change_the_answer_as_in_python(server):
    """repetition_penalty and no_repeat_ngram_size (vLLM's names) reach the model: the server's answer is the one
    Predictor.generate gives with the same settings, and a stop string cuts it."""
    predictor = tunesmith.Predictor.load(server["folder"] / "chat")
    prompt = "where is my order 7"
    settings = {"repetition_penalty": 1.5, "no_repeat_ngram_size": 1}
    expected = predictor.generate(prompt, max_new_tokens=12, decoding=settings)
    payload = {"model": "chat", "messages": [{"role": "user", "content": prompt}], "max_tokens": 12, **settings}
    answer = _post(server, "/v1/chat/completions", payload)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == expected
    if len(expected) >= 3:
        stop = expected[1:3]
        cut = _post(server, "/v1/chat/completions", {**payload, "stop": [stop]}).json()["choices"][0]
        assert cut["message"]["content"] == expected[: expected.index(stop)] and cut["finish_reason"] == "stop"


def test_beam_search_answers_as_in_python_streamed_or_not(server):
    predictor = tunesmith.Predictor.load(server["folder"] / "chat")
    prompt = "where is my order 7"
    settings = {"num_beams": 3, "length_penalty": 0.7}
    expected = predictor.generate(prompt, max_new_tokens=8, decoding=settings)
    payload = {"model": "chat", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, **settings}
    answer = _post(server, "/v1/chat/completions", payload)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == expected
    # transformers refuses a streamer with beams: the stream carries the finished answer instead of an error
    streamed = _post(server, "/v1/chat/completions", {**payload, "stream": True})
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert all("error" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip() == expected
    refused = _post(server, "/v1/chat/completions", {**payload, "num_beams": 1, "stream": True})
    assert refused.status_code == 400 and "length_penalty acts only in beam search" in refused.text
    assert _post(server, "/v1/chat/completions", {**payload, "num_beams": 9}).status_code == 400  # bounded


def test_concurrent_requests_are_all_answered(server):
    texts = [f"the movie is good {i}" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: _post(server, "/v1/classify", {"model": "classifier", "input": t}), texts))
        chats = list(
            pool.map(
                lambda i: _post(
                    server,
                    "/v1/chat/completions",
                    {
                        "model": "chat",
                        "messages": [{"role": "user", "content": f"where is my order {i}"}],
                        "max_tokens": 3,
                    },
                ),
                range(8),
            )
        )
    assert all(a.status_code == 200 and len(a.json()["data"]) == 1 for a in answers)
    assert all(c.status_code == 200 and c.json()["choices"][0]["message"]["role"] == "assistant" for c in chats)


def test_concurrent_streams_share_a_batch_and_report_usage(server):
    """8 streaming clients at once: each gets its own answer (the greedy one) and, when asked, the usage chunk."""
    from openai import OpenAI

    client = OpenAI(base_url=server["url"] + "/v1", api_key=KEY)
    prompts = [f"where is my order {i}" for i in range(8)]

    def stream(prompt):
        chunks = list(
            client.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[-1]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(stream, prompts))
    predictor = tunesmith.Predictor.load(server["folder"] / "chat")
    for prompt, (text, last) in zip(prompts, results):
        assert text.strip() == predictor.generate(prompt, max_new_tokens=6)
        assert last.choices == [] and 0 < last.usage.completion_tokens <= 6 and last.usage.prompt_tokens > 0


def test_quantize_int8_serves_classifiers_from_int8_weights(server):
    from fastapi.testclient import TestClient

    from tunesmith.errors import TunesmithError
    from tunesmith.serve import create_app

    folder = server["folder"]
    with pytest.raises(TunesmithError, match="choose one of int8"):
        create_app([folder / "classifier"], quantize="int4")
    with TestClient(create_app([folder / "classifier", folder / "chat"], quantize="int8")) as client:
        cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
        assert (
            cards["classifier"]["quantized"] == "int8" and cards["chat"]["quantized"] is None
        )  # generation keeps its weights
        texts = pd.read_csv(folder / "test.csv")["text"].tolist()
        served = client.post("/v1/classify", json={"model": "classifier", "input": texts}).json()["data"]
    exact = tunesmith.Predictor.load(folder / "classifier")
    probs = exact.predict_proba(texts)
    same = sum(row["label"] == exact.classes_[p.argmax()] for row, p in zip(served, probs))
    assert same >= 0.9 * len(texts)  # int8 moves probabilities a little, rarely a label
    drift = max(
        abs(row["score"] - p.max()) for row, p in zip(served, probs) if row["label"] == exact.classes_[p.argmax()]
    )
    assert 0 < drift < 0.1  # not the fp32 model (0 would mean nothing was quantized), and close to it
