"""What a request may hold: the schemas, the JSON checks, and OpenAI's fields tunesmith does not act on.

A field the server would silently ignore changes what the client thinks it asked for (`tools`, `logprobs`,
`response_format`...), so those are refused unless sent at their neutral value; a key OpenAI does not know
is refused as OpenAI refuses it. Strings that cannot be UTF-8 (a lone surrogate like "\\ud800") are refused
here, before they can reach a batch that other clients share."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ApiError

Text = Annotated[str, Field(max_length=1_000_000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None  # None: the one model served for the route (vLLM's default); several must be named


class ClassifyRequest(_Request):
    # a text, a list of texts, or (runs trained on text pairs) a list of [text, text_pair]
    input: Text | list[Text] | list[Annotated[list[Text], Field(min_length=2, max_length=2)]]
    top_k: int = Field(3, ge=1)


class ChatRequest(_Request):
    messages: list[dict] = Field(min_length=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name OpenAI clients send
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = None  # OpenAI's bound: up to 4 sequences
    # not OpenAI's (vLLM's OpenAI server takes the same names); unset = the run's eval.decoding
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    no_repeat_ngram_size: int | None = Field(None, ge=0, le=10, strict=True)  # `true` is not an n-gram size
    num_beams: int | None = Field(None, ge=1, le=8, strict=True)  # bounded: each beam costs a sequence's compute
    length_penalty: float | None = Field(None, ge=-5, le=5)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict | None = None  # {"include_usage": true}: a last chunk with the token counts


class CompletionRequest(ChatRequest):
    messages: list[dict] | None = None
    prompt: Text


# Accepted and without effect on the answer (bookkeeping fields).
HARMLESS = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "stream_options"}
# OpenAI fields tunesmith does not implement: accepted only at the value that asks for nothing.
NEUTRAL = {
    "tools": ([], None),
    "tool_choice": ("none", "auto", None),
    "functions": ([], None),
    "function_call": ("none", "auto", None),
    "response_format": ({"type": "text"}, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "logit_bias": ({}, None),
    "echo": (False, None),
    "best_of": (1, None),
    "suffix": ("", None),
    "presence_penalty": (0, None),
    "frequency_penalty": (0, None),
    "modalities": (["text"], None),
    "audio": (None,),
    "prediction": (None,),
}


def parse(body: bytes, schema: type[BaseModel]) -> BaseModel:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    where = _not_utf8(payload)
    if where is not None:
        raise ApiError(
            400,
            f"{where or 'a key'}: holds a lone surrogate (e.g. \\ud800), which is not text; send valid UTF-8.",
            param=where or None,
            code="invalid_text",
        )
    _refuse_unsupported(payload, schema)
    try:
        return schema.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ApiError(400, f"{where}: {first['msg']}.", param=where, code="invalid_value") from None


def _refuse_unsupported(payload: dict, schema) -> None:
    for key, value in payload.items():
        if key in schema.model_fields or key in HARMLESS:
            continue
        if key in NEUTRAL and schema is not ClassifyRequest:
            if value in NEUTRAL[key]:
                continue
            raise ApiError(
                400,
                f"{key}: tunesmith serve does not support it (send it unset, or {NEUTRAL[key][0]!r}).",
                param=key,
                code="unsupported_parameter",
            )
        if key == "seed" and schema is not ClassifyRequest:
            if payload.get("temperature") in (0, None):
                continue  # greedy decoding gives the same answer every time: the seed is already honoured
            raise ApiError(
                400,
                "seed: answers sampled with temperature > 0 share batches with other requests and cannot be "
                "seeded; use temperature 0 for answers that repeat.",
                param="seed",
                code="unsupported_parameter",
            )
        raise ApiError(400, f"Unrecognized request argument supplied: {key}", param=key, code="unknown_parameter")


def _not_utf8(payload) -> str | None:
    """The path of the first string (or key) that UTF-8 cannot encode, else None (iterative: JSON may nest deep)."""
    stack = [("", payload)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return where
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and not _encodes(key):
                return where
            stack.append((f"{where}.{key}" if where else str(key), item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
