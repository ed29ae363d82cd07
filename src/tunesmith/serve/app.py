"""`tunesmith serve`: finished runs behind an OpenAI-compatible HTTP API (FastAPI). Generation runs answer
/v1/chat/completions and /v1/completions (streaming as server-sent events); classification, multi-label, regression and
token-classification runs answer /v1/classify. Every error is a 4xx in OpenAI's error shape, never a traceback."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import TunesmithError
from ..runs.collect import Store
from .batching import Batcher
from .errors import ApiError
from .feedback import checked
from .guard import Guard
from .monitoring import Measured, Monitor
from .requests import ChatRequest, ClassifyRequest, CompletionRequest, parse
from .served import Limits, Served, classify_items, top_labels
from .versions import Swapper


def create_app(
    runs,
    api_key: str | None = None,
    limits: Limits | None = None,
    quantize: str | None = None,
    collect: str | Path | None = None,
    watch_s: float | None = 2.0,
    collect_max_rows: int = 1_000_000,
):
    """The ASGI app serving `runs` (run directories, or {name: run directory}); mount it in your own stack.
    `quantize="int8"`: /v1/classify runs answer from int8 weights (CPU; faster, answers move slightly).
    `collect`: a folder where every answered request is recorded (serve/collect.py), and feedback accepted.
    `watch_s`: how often a continual run's current version is checked; a new one is swapped in live."""
    limits = limits or Limits()
    _check_settings(api_key, limits)
    if quantize:
        from .quantize import check_mode

        check_mode(quantize)  # before any model loads
    named = runs if isinstance(runs, dict) else {Path(r).name: r for r in runs}
    monitor = Monitor()
    store = Store(collect, collect_max_rows) if collect is not None else None
    served = {}
    for name, path in named.items():
        served[name] = _loaded(Served(name, Path(path), limits, quantize, drift=True), monitor)
    swapper = Swapper(
        served, lambda run: _loaded(Served(run.name, run.run_dir, limits, quantize, drift=True), monitor), monitor
    )

    @asynccontextmanager
    async def lifespan(_app):
        watcher = asyncio.create_task(swapper.watch(watch_s)) if watch_s else None
        yield
        if watcher:
            watcher.cancel()
        for run in served.values():  # shutdown: requests in flight have finished (uvicorn waits for them)
            for batcher in run.batchers.values():
                await batcher.close()
        if store:
            store.close()

    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.served = served  # name -> Served: what the app holds, for code that mounts or inspects it
    app.state.store, app.state.monitor, app.state.swapper = store, monitor, swapper

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(HTTPException)  # unknown routes and methods: OpenAI's shape too
    async def _http_error(_request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            ApiError(exc.status_code, f"{_request.method} {_request.url.path}: {exc.detail}.", code=kind).body,
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _server_error(_request, exc: Exception):
        error = ApiError(
            500,
            f"The server failed on this request ({type(exc).__name__}); other requests are unaffected.",
            "server_error",
            code="internal_error",
        )
        return JSONResponse(error.body, status_code=500)

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    app.add_middleware(Measured, monitor=monitor)  # outermost: it times and counts the Guard's refusals too

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": sorted(served)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [s.card() for s in served.values()]}

    @app.get("/metrics")
    async def metrics():
        return Response(monitor.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/admin/reload")
    async def reload():
        """Swap in each run's current version now (what the watcher does every few seconds)."""
        return {"swapped": await swapper.check()}

    @app.post("/v1/classify")
    async def classify(request: Request):
        body = parse(await request.body(), ClassifyRequest)
        run = _model(served, body.model, generative=False)  # this request stays on this version to its end
        texts = _inputs(run, body.input, limits)
        work = lambda items: classify_items(run.predictor, items, run.reference)  # noqa: E731
        rows = await _answer(run.batcher("classify", work), texts)
        data = [{"index": i, **top_labels(row, body.top_k)} for i, row in enumerate(rows)]
        monitor.answered(run, data)
        if store:
            items = [(text, _answer_of(item), row.get("probs") or row) for text, item, row in zip(texts, data, rows)]
            ids = await asyncio.to_thread(store.record, run.name, run.version, run.task, items)
            for item, ident in zip(data, ids):
                item["id"] = ident
        return {"object": "list", "model": run.name, "version": run.version, "data": data}

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        if store is None:
            raise ApiError(404, "This server records no requests; start it with --collect DIR to take feedback.")
        body = _object(await request.body())
        ident = body.get("id")
        asked = await asyncio.to_thread(store.request, ident) if isinstance(ident, str) else None
        if asked is None:
            raise ApiError(404, f"No recorded request has id {repr(ident)[:80]}.", param="id", code="unknown_id")
        run = served.get(asked["model"])
        if run is None:
            raise ApiError(404, f"Model '{asked['model']}' of that request is not served here.", param="id")
        kind, value = checked(run, body, asked["input"])
        await asyncio.to_thread(store.add_feedback, ident, run.name, kind, value)
        monitor.feedback_for(run.name, asked["version"], kind, value, asked["answer"])
        return {"object": "feedback", "id": ident, "model": run.name, "kind": kind}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = parse(await request.body(), ChatRequest)
        return await _complete(served, body, body.messages, "chat.completion", limits, StreamingResponse, store)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = parse(await request.body(), CompletionRequest)
        messages = [{"role": "user", "content": body.prompt}]
        return await _complete(served, body, messages, "text_completion", limits, StreamingResponse, store)

    return app


def _loaded(run: Served, monitor: Monitor) -> Served:
    run.observe = lambda size, name=run.name: monitor.batch.labels(name).observe(size)
    monitor.model_loaded(run)
    return run


def _answer_of(item: dict):
    """What the client was told, as recorded: the label (and labels), the value, or the entities."""
    return {k: item[k] for k in ("label", "labels", "value", "entities", "far_from_training") if k in item}


def _object(raw: bytes) -> dict:
    import json

    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # nested past the stack raises the latter
        raise ApiError(400, "The request body is not JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _check_settings(api_key: str | None, limits: Limits) -> None:
    """Settings that would serve something other than what was asked: refused before any model loads."""
    if api_key is not None and not api_key.strip():
        raise TunesmithError(
            "The API key is empty (was --api-key given an unset variable?); an empty key would serve without "
            "authentication. Give a real key, or leave --api-key out to serve without one."
        )
    for field in fields(limits):
        value = getattr(limits, field.name)
        if field.name != "max_gap_s" and not value > 0 or field.name == "max_gap_s" and value < 0:
            raise TunesmithError(f"{field.name.replace('_', '-')} must be a positive number, not {value}.")


def _inputs(run, given, limits: Limits) -> list:
    """The texts (or [text, text_pair] pairs) of a /v1/classify request, checked against what the run reads."""
    texts = [given] if isinstance(given, str) else list(given)
    if not texts or len(texts) > limits.max_inputs:
        raise ApiError(
            400, f"input holds {len(texts)} texts; send 1 to {limits.max_inputs}.", param="input", code="max_inputs"
        )
    pairs = (getattr(run.predictor, "columns", None) or {}).get("pair")
    if pairs and not all(isinstance(t, list) for t in texts):
        raise ApiError(
            400,
            f"Model '{run.name}' reads text pairs ('{pairs}' beside the text); send input as [[text, text_pair], ...].",
            param="input",
            code="invalid_value",
        )
    if not pairs and any(isinstance(t, list) for t in texts):
        raise ApiError(
            400,
            f"Model '{run.name}' reads single texts; send input as a string or a list of strings.",
            param="input",
            code="invalid_value",
        )
    return [tuple(t) for t in texts] if pairs else texts


async def _answer(batcher: Batcher, items: list) -> list:
    """The batch's answer for these items; what fails on the request's own input is a 400, not a 500."""
    try:
        return await batcher.submit(items)
    except (TunesmithError, ValueError) as err:
        raise ApiError(400, f"input: {err}", param="input", code="invalid_value") from None


def _model(served: dict, name: str | None, generative: bool) -> Served:
    if name is None:  # the route's only model answers; with several, which one is the client's to say
        fitting = sorted(n for n, run in served.items() if run.generative == generative)
        if len(fitting) != 1:
            listed = ", ".join(fitting) or "none for this route"
            raise ApiError(400, f"model: name the model to ask ({listed}).", param="model", code="invalid_value")
        name = fitting[0]
    run = served.get(name)
    if run is None:
        raise ApiError(
            404,
            f"Unknown model '{name}'. Available: {', '.join(sorted(served))}.",
            param="model",
            code="model_not_found",
        )
    if run.generative != generative:
        route = "/v1/chat/completions" if run.generative else "/v1/classify"
        raise ApiError(400, f"Model '{name}' is a {run.task} run; use {route}.", param="model", code="wrong_route")
    return run


async def _complete(
    served: dict, body, messages: list[dict], kind: str, limits: Limits, streaming_response, store=None
):
    from .chat import complete, penalties_of, prompt_tokens, stream_chunks

    run = _model(served, body.model, generative=True)
    try:  # settings that contradict each other or the run's (length_penalty without beams) fail before a stream starts
        run.predictor.decoding_with(penalties_of(body))
    except TunesmithError as err:
        raise ApiError(400, str(err), code="invalid_value") from None
    messages = [_message(m, i) for i, m in enumerate(messages)]
    max_new = body.max_tokens or body.max_completion_tokens or min(run.predictor.max_new_tokens, limits.max_tokens)
    if max_new > limits.max_tokens:
        raise ApiError(
            400,
            f"max_tokens {max_new} is over the limit of {limits.max_tokens}.",
            param="max_tokens",
            code="max_tokens",
        )
    used = await asyncio.to_thread(prompt_tokens, run.predictor, messages)  # a long prompt must not hold up /health
    if used > limits.max_prompt_tokens:
        raise ApiError(
            400,
            f"The prompt has {used} tokens; the limit is {limits.max_prompt_tokens}.",
            param="messages",
            code="max_prompt_tokens",
        )
    # the request's stop strings and the run's own (eval.decoding.stop) both end an answer
    stops = ([body.stop] if isinstance(body.stop, str) else list(body.stop or [])) + list(run.predictor.decoding.stop)
    ident = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    if body.stream:
        return streaming_response(
            stream_chunks(run, messages, max_new, body, stops, ident, kind, used, store), media_type="text/event-stream"
        )
    try:
        answer, finish, completion = await complete(run, messages, max_new, body, stops)
    except (TunesmithError, ValueError) as err:
        raise ApiError(400, f"messages: {err}", param="messages", code="invalid_value") from None
    if store:
        await asyncio.to_thread(store.record, run.name, run.version, run.task, [(messages, answer, None)], [ident])
    choice = (
        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}
        if kind == "chat.completion"
        else {"index": 0, "text": answer, "finish_reason": finish, "logprobs": None}
    )
    return {
        "id": ident,
        "object": kind,
        "created": int(time.time()),
        "model": run.name,
        "system_fingerprint": f"v{run.version}",  # OpenAI's field for "which backend answered": the version
        "choices": [choice],
        "usage": {"prompt_tokens": used, "completion_tokens": completion, "total_tokens": used + completion},
    }


def _message(message, index: int) -> dict:
    """A chat message as {role, content: str}; OpenAI's content parts are accepted when they are all text."""
    if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
        raise ApiError(
            400,
            f"messages.{index}: each message needs a role (system, user or assistant) and a string content.",
            param=f"messages.{index}",
            code="invalid_value",
        )
    content = message.get("content")
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ApiError(
            400,
            f'messages.{index}.content: send a string, or a list of {{"type": "text", "text": ...}} parts '
            "(this server answers text only).",
            param=f"messages.{index}.content",
            code="invalid_value",
        )
    return {"role": message["role"], "content": content}
