"""`tunesmith serve` under hostile requests on a live server (127.0.0.1): a bad input fails alone with a 4xx, the body
limit holds for chunked uploads, an empty API key is refused, streams that end early stop their generation, and no
request blocks the event loop."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import tunesmith
from tests import test_regression
from tests.test_serve import KEY, _post, server  # noqa: F401  (the module's live server)
from tunesmith.errors import TunesmithError
from tunesmith.serve import Limits, create_app

SURROGATE = b'{"model": "classifier", "input": "good \\ud800 movie"}'


def test_a_lone_surrogate_fails_alone_and_the_clients_batched_with_it_are_answered(server):
    def good(i):
        return _post(server, "/v1/classify", {"model": "classifier", "input": [f"great movie {i}"]})

    with ThreadPoolExecutor(16) as pool:
        bad = [pool.submit(_post, server, "/v1/classify", None, KEY, SURROGATE) for _ in range(3)]
        fine = [pool.submit(good, i) for i in range(15)]
        answers = [f.result() for f in fine]
        refused = [f.result() for f in bad]
    assert [r.status_code for r in answers] == [200] * 15
    assert all(r.status_code == 400 and r.json()["error"]["code"] == "invalid_text" for r in refused)


@pytest.mark.parametrize(
    "path, payload",
    [
        ("/v1/chat/completions", '{"model": "chat", "messages": [{"role": "user", "content": "hi \\udfff"}]}'),
        (
            "/v1/chat/completions",
            '{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud83d"]}',
        ),
        ("/v1/completions", '{"model": "chat", "prompt": "x", "user": "\\ud800"}'),
        ("/v1/classify", '{"model": "classifier\\ud800", "input": "x"}'),
        ("/v1/classify", '{"model": "classifier", "input": "x", "\\ud800": 1}'),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_request_is_a_400(server, path, payload):
    answer = _post(server, path, None, KEY, payload.encode())
    assert answer.status_code == 400 and "surrogate" in answer.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(server):
    def chunks():  # no Content-Length: the server sees only a stream of 100 kB pieces
        for _ in range(40):
            yield b"x" * 100_000

    answer = httpx.post(
        server["url"] + "/v1/classify",
        content=chunks(),
        timeout=60,
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "max_body_bytes"
    # the guard itself stops reading at the limit (20 kB here): one 100 kB piece of 2,000 read, the route never called
    from tunesmith.serve.guard import Guard

    read, routed, sent = [], [], []

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": b"x" * 100_000, "more_body": True}

    async def send(message):
        sent.append(message)

    async def route(scope, receive, send):
        routed.append(1)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/classify",
        "headers": [(b"authorization", f"Bearer {KEY}".encode())],
    }
    asyncio.run(Guard(route, KEY, 20_000)(scope, receive, send))
    assert len(read) == 1 and not routed and sent[0]["status"] == 413


def test_unknown_routes_and_methods_answer_in_openai_shape(server):
    headers = {"Authorization": f"Bearer {KEY}"}
    missing = httpx.get(server["url"] + "/v1/embeddings", headers=headers)
    wrong = httpx.get(server["url"] + "/v1/classify", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}], "unsupported_parameter"),
        ("response_format", {"type": "json_object"}, "unsupported_parameter"),
        ("logprobs", True, "unsupported_parameter"),
        ("echo", True, "unsupported_parameter"),
        ("seed", 7, "unsupported_parameter"),  # with temperature > 0 (below)
        ("frequency_penalty", 0.5, "unsupported_parameter"),
        ("temprature", 0.5, "unknown_parameter"),
    ],
)
def test_openai_fields_the_server_does_not_act_on_are_refused(server, field, value, code):
    payload = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "temperature": 0.7,
        field: value,
    }
    answer = _post(server, "/v1/chat/completions", payload)
    assert (
        answer.status_code == 400
        and answer.json()["error"]["code"] == code
        and answer.json()["error"]["param"] == field
    )


def test_neutral_openai_fields_and_text_parts_are_accepted(server):
    payload = {
        "model": "chat",
        "max_completion_tokens": 2,
        "logprobs": False,
        "seed": 3,
        "user": "u1",
        "tools": [],
        "response_format": {"type": "text"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    answer = _post(server, "/v1/chat/completions", payload)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] <= 2


def test_stop_sequences_are_bounded(server):
    payload = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stop": [f"s{i}" for i in range(1500)]}
    started = time.perf_counter()
    answer = _post(server, "/v1/chat/completions", payload)
    assert answer.status_code == 400 and answer.json()["error"]["param"].startswith("stop")
    assert time.perf_counter() - started < 2


@pytest.fixture
def slow_model(server, monkeypatch):
    """The chat model with no end-of-turn token and 20 ms per step, counting its forward passes."""
    from tunesmith.tasks.generation import streams

    monkeypatch.setattr(streams, "stop_token_ids", lambda tokenizer: [])
    model = server["app"].state.served["chat"].predictor.model
    steps = []
    real = model.forward

    def forward(*args, **kwargs):
        steps.append(time.perf_counter())
        time.sleep(0.02)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    return steps


def _stream(server, payload):
    return httpx.stream(
        "POST",
        server["url"] + "/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "model": "chat",
            "messages": [{"role": "user", "content": "where is my order"}],
            "stream": True,
            "max_tokens": 64,
            **payload,
        },
    )


def test_a_client_that_leaves_stops_its_generation(server, slow_model):
    with _stream(server, {}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data:")
        next(lines)
    left = len(slow_model)
    time.sleep(0.6)
    assert len(slow_model) - left <= 5  # without cancelling: 64 steps, about 1.3 s more
    started = time.perf_counter()
    assert (
        _post(
            server,
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        ).status_code
        == 200
    )
    assert time.perf_counter() - started < 1.5


def test_a_matched_stop_sequence_ends_the_generation(server, slow_model):
    with _stream(server, {"max_tokens": 6}) as response:
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in response.iter_lines()
            if line.startswith("data: {")
        )
    assert len(text) >= 2
    slow_model.clear()
    with _stream(server, {"stop": [text[1]]}) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    time.sleep(0.3)
    assert events[-1] == "data: [DONE]" and '"finish_reason": "stop"' in events[-2]
    assert len(slow_model) < 20


def test_an_empty_api_key_or_nonsense_limits_are_refused_before_serving(server):
    for bad in ("", "   "):
        with pytest.raises(TunesmithError, match="API key is empty"):
            create_app([server["folder"] / "classifier"], api_key=bad)
    for limits in (Limits(max_inputs=0), Limits(max_tokens=-1), Limits(max_body_bytes=0)):
        with pytest.raises(TunesmithError, match="must be a positive number"):
            create_app([server["folder"] / "classifier"], limits=limits)


def test_the_cli_refuses_an_empty_key_from_the_environment_and_negative_settings(server, monkeypatch):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    runner = CliRunner()
    monkeypatch.setenv("TUNESMITH_API_KEY", "")
    done = runner.invoke(app, ["serve", str(server["folder"] / "classifier")])
    assert done.exit_code == 2 and "API key is empty" in done.output
    monkeypatch.delenv("TUNESMITH_API_KEY")
    for option in (["--threads", "-3"], ["--max-inputs", "0"], ["--max-tokens", "-1"]):
        done = runner.invoke(app, ["serve", str(server["folder"] / "classifier"), *option])
        assert done.exit_code == 2 and option[0] in done.output, done.output


def test_a_pair_regression_run_is_served_with_text_pairs(tmp_path):
    paths = test_regression.write_sets(tmp_path, pairs=True)
    run = tunesmith.run(test_regression.recipe(paths, text_pair_column="other"), output_dir=tmp_path / "pairs").run_dir
    app = create_app([run])
    expected = tunesmith.Predictor.load(run).predict(["a b", "c"], ["d", "e f"])

    async def ask():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            good = await client.post("/v1/classify", json={"model": "pairs", "input": [["a b", "d"], ["c", "e f"]]})
            single = await client.post("/v1/classify", json={"model": "pairs", "input": ["a b"]})
            return good, single

    good, single = asyncio.run(ask())
    assert good.status_code == 200
    assert [row["value"] for row in good.json()["data"]] == pytest.approx(list(expected), abs=1e-5)
    assert single.status_code == 400 and "text pairs" in single.json()["error"]["message"]


def test_distinct_sampling_settings_do_not_grow_the_server_without_bound(server):
    run = server["app"].state.served["chat"]
    for i in range(60):
        answer = _post(
            server,
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
                "temperature": 0.01 * (i + 1),
            },
        )
        assert answer.status_code == 200
    assert len(run.batchers) <= 33
