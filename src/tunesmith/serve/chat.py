"""Completions for generation runs: batched answers, and answers streamed as OpenAI's server-sent event chunks."""

from __future__ import annotations

import asyncio
import json
import threading
import time


def prompt_tokens(predictor, messages: list[dict]) -> int:
    from ..tasks.generation.formatting import render
    text = render(predictor.tokenizer, messages, add_generation_prompt=True)
    return len(predictor.tokenizer(text, add_special_tokens=False)["input_ids"])


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


async def complete(run, messages: list[dict], max_new: int, body, stops: list[str]) -> tuple[str, str, int]:
    """(answer, finish_reason, completion tokens). Concurrent requests with the same settings share one batch."""
    predictor = run.predictor
    work = lambda prompts: predictor.generate(prompts, max_new, body.temperature, body.top_p)  # noqa: E731
    answer = (await run.batcher(("generate", max_new, body.temperature, body.top_p), work).submit([messages]))[0]
    answer, stopped = cut_at_stop(answer, stops)
    used = len(predictor.tokenizer(answer, add_special_tokens=False)["input_ids"])
    return answer, "length" if used >= max_new and not stopped else "stop", used


async def stream_chunks(run, messages: list[dict], max_new: int, body, stops: list[str], ident: str, kind: str):
    """`data: {chunk}` lines as the model writes, then the finish reason, then `data: [DONE]`."""
    loop, queue, done = asyncio.get_running_loop(), asyncio.Queue(), object()

    def produce():  # the model runs in its own thread: the event loop keeps serving other requests
        try:
            for piece in run.predictor.stream(messages, max_new, body.temperature, body.top_p):
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        except Exception as exc:  # noqa: BLE001  (ends the stream with an error event instead of hanging it)
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=produce, daemon=True).start()
    created, text, finish = int(time.time()), "", "length"
    yield _event(ident, kind, created, run.name, {"role": "assistant", "content": ""}, None)
    while (piece := await queue.get()) is not done:
        if isinstance(piece, Exception):
            yield f"data: {json.dumps({'error': {'message': f'generation failed: {piece}', 'type': 'server_error'}})}\n\n"
            break
        cut, stopped = cut_at_stop(text + piece, stops)
        if cut[len(text):]:
            yield _event(ident, kind, created, run.name, {"content": cut[len(text):]}, None)
        text = cut
        if stopped:
            finish = "stop"
            break
    else:
        used = len(run.predictor.tokenizer(text, add_special_tokens=False)["input_ids"])
        finish = "length" if used >= max_new else "stop"
    yield _event(ident, kind, created, run.name, {}, finish)
    yield "data: [DONE]\n\n"


def _event(ident: str, kind: str, created: int, model: str, delta: dict, finish: str | None) -> str:
    if kind == "chat.completion":
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    else:
        chunk = {"id": ident, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}]}
    return f"data: {json.dumps(chunk)}\n\n"
