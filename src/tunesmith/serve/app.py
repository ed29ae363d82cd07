"""`tunesmith serve`: finished runs behind an OpenAI-compatible HTTP API (FastAPI). Generation runs answer
/v1/chat/completions and /v1/completions (streaming as server-sent events); classification, multi-label, regression and
token-classification runs answer /v1/classify. Every error is a 4xx in OpenAI's error shape, never a traceback."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..predict import Predictor, identify
from .batching import Batcher


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_inputs: int = 256           # texts per /v1/classify request
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024          # new tokens per completion
    max_batch: int = 32
    max_wait_s: float = 0.02        # the longest a request waits for companions
    max_gap_s: float = 0.002        # ...or until none has come for this long (classify; see Batcher)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str


class ClassifyRequest(_Request):
    input: str | list[str]
    top_k: int = Field(3, ge=1)


class ChatRequest(_Request):
    messages: list[dict] = Field(min_length=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict | None = None  # {"include_usage": true}: a last chunk with the token counts


class CompletionRequest(ChatRequest):
    messages: list[dict] | None = None
    prompt: str


class Served:
    """One run behind the API: its predictor, what it does, and the batcher that groups its requests."""

    def __init__(self, name: str, run_dir: Path, limits: Limits, quantize: str | None = None):
        run_dir, method, task, _, recipe = identify(run_dir)
        self.name, self.task, self.method = name, task, method
        self.base_model = (recipe.get("model") or {}).get("name") if isinstance(recipe.get("model"), dict) else recipe.get("model")
        self.predictor = Predictor.load(run_dir)
        self.generative = hasattr(self.predictor, "generate")
        self.quantized = quantize if quantize and not self.generative else None  # generation keeps its weights
        if self.quantized:
            from .quantize import quantize_predictor
            quantize_predictor(self.predictor, quantize)
        self.batchers: dict = {}
        self.limits = limits

    def batcher(self, key, work) -> Batcher:
        if key not in self.batchers:
            # a generation lasts seconds: waiting 50 ms for companions costs nothing and lets streams share a batch
            wait = max(self.limits.max_wait_s, 0.05) if self.generative else self.limits.max_wait_s
            gap = None if self.generative else self.limits.max_gap_s
            self.batchers[key] = Batcher(work, self.limits.max_batch, wait, gap)
        return self.batchers[key]

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "tunesmith", "task": self.task,
                "method": self.method, "base_model": self.base_model, "quantized": self.quantized}


class Guard:
    """The API key and the body-size limit, checked before a request reaches a route. A plain ASGI middleware:
    Starlette's @app.middleware("http") wraps every request and response in extra tasks and queues, which
    cost more than a batched classification of one text."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.expected, self.max_body = app, f"Bearer {api_key}".encode() if api_key else None, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.expected and headers.get(b"authorization") != self.expected:
                return await JSONResponse(ApiError(401, "Missing or wrong API key: send Authorization: Bearer <key>.",
                                                   "authentication_error", code="invalid_api_key").body, status_code=401)(scope, receive, send)
            size = headers.get(b"content-length", b"").decode("latin-1")
            if size.isdigit() and int(size) > self.max_body:
                return await JSONResponse(ApiError(413, f"Request body of {size} bytes is over the limit of {self.max_body}.",
                                                   code="max_body_bytes").body, status_code=413)(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(runs, api_key: str | None = None, limits: Limits | None = None, quantize: str | None = None):
    """The ASGI app serving `runs` (run directories, or {name: run directory}); mount it in your own stack.
    `quantize="int8"`: /v1/classify runs answer from int8 weights (CPU; faster, answers move slightly)."""
    limits = limits or Limits()
    if quantize:
        from .quantize import check_mode
        check_mode(quantize)  # before any model loads
    named = runs if isinstance(runs, dict) else {Path(r).name: r for r in runs}
    served = {name: Served(name, Path(path), limits, quantize) for name, path in named.items()}
    @asynccontextmanager
    async def lifespan(_app):
        yield
        for run in served.values():  # shutdown: requests in flight have finished (uvicorn waits for them)
            for batcher in run.batchers.values():
                await batcher.close()

    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return JSONResponse(exc.body, status_code=exc.status)

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": sorted(served)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [s.card() for s in served.values()]}

    @app.post("/v1/classify")
    async def classify(request: Request):
        body = await _parse(request, ClassifyRequest, limits)
        run = _model(served, body.model, generative=False)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > limits.max_inputs:
            raise ApiError(400, f"input holds {len(texts)} texts; send 1 to {limits.max_inputs}.", param="input", code="max_inputs")
        rows = await run.batcher("classify", lambda items: _classify(run.predictor, items)).submit(texts)
        data = [{"index": i, **_top(row, body.top_k)} for i, row in enumerate(rows)]
        return {"object": "list", "model": run.name, "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatRequest, limits)
        return await _complete(served, body, body.messages, "chat.completion", limits, StreamingResponse)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionRequest, limits)
        return await _complete(served, body, [{"role": "user", "content": body.prompt}], "text_completion", limits, StreamingResponse)

    return app


async def _parse(request, schema, limits: Limits):
    body = await request.body()
    if len(body) > limits.max_body_bytes:
        raise ApiError(413, f"Request body over the limit of {limits.max_body_bytes} bytes.", code="max_body_bytes")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return schema.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ApiError(400, f"{where}: {first['msg']}.", param=where, code="invalid_value") from None


def _model(served: dict, name: str, generative: bool) -> Served:
    run = served.get(name)
    if run is None:
        raise ApiError(404, f"Unknown model '{name}'. Available: {', '.join(sorted(served))}.", param="model", code="model_not_found")
    if run.generative != generative:
        route = "/v1/chat/completions" if run.generative else "/v1/classify"
        raise ApiError(400, f"Model '{name}' is a {run.task} run; use {route}.", param="model", code="wrong_route")
    return run


def _classify(predictor, texts: list[str]) -> list[dict]:
    """Per text: label scores (classifier, multi-label: each label's probability) or a value (regression)."""
    if hasattr(predictor, "predict_tags"):  # token classification: the entities found in each text
        return [{"entities": found} for found in predictor.predict(texts)]
    if not hasattr(predictor, "predict_proba"):
        return [{"value": float(v)} for v in predictor.predict(texts)]
    probs = predictor.predict_proba(texts)
    if hasattr(predictor, "thresholds"):
        on = probs >= np.asarray(predictor.thresholds["per_label"])  # the saved per-label thresholds, on the batch's probabilities
        chosen = [[label for label, hit in zip(predictor.classes_, row) if hit] for row in on]
        return [{"labels": labels, "probs": dict(zip(predictor.classes_, map(float, row)))} for labels, row in zip(chosen, probs)]
    return [{"probs": dict(zip(predictor.classes_, map(float, row)))} for row in probs]


def _top(row: dict, k: int) -> dict:
    if "value" in row or "entities" in row:
        return row
    ranked = sorted(row["probs"].items(), key=lambda item: -item[1])
    out = {"label": ranked[0][0], "score": ranked[0][1], "top": [{"label": label, "score": p} for label, p in ranked[:k]]}
    if "labels" in row:
        out["labels"] = row["labels"]
    return out


async def _complete(served: dict, body, messages: list[dict], kind: str, limits: Limits, streaming_response):
    from .chat import complete, prompt_tokens, stream_chunks
    run = _model(served, body.model, generative=True)
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
               for m in messages):
        raise ApiError(400, "messages: each message needs a role (system, user or assistant) and a string content.",
                       param="messages", code="invalid_value")
    max_new = body.max_tokens or min(256, limits.max_tokens)
    if max_new > limits.max_tokens:
        raise ApiError(400, f"max_tokens {max_new} is over the limit of {limits.max_tokens}.", param="max_tokens", code="max_tokens")
    used = prompt_tokens(run.predictor, messages)
    if used > limits.max_prompt_tokens:
        raise ApiError(400, f"The prompt has {used} tokens; the limit is {limits.max_prompt_tokens}.", param="messages",
                       code="max_prompt_tokens")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    ident = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    if body.stream:
        return streaming_response(stream_chunks(run, messages, max_new, body, stops, ident, kind, used), media_type="text/event-stream")
    answer, finish, completion = await complete(run, messages, max_new, body, stops)
    choice = ({"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}
              if kind == "chat.completion" else {"index": 0, "text": answer, "finish_reason": finish, "logprobs": None})
    return {"id": ident, "object": kind, "created": int(time.time()), "model": run.name, "choices": [choice],
            "usage": {"prompt_tokens": used, "completion_tokens": completion, "total_tokens": used + completion}}
