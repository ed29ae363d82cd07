"""Completions for generation runs: batched answers, and answers streamed as OpenAI's server-sent event chunks."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from ..tasks.generation.generate import cut_at_stop


def prompt_tokens(predictor, messages: list[dict]) -> int:
    from ..tasks.generation.formatting import render

    text = render(predictor.tokenizer, messages, add_generation_prompt=True)
    return len(predictor.tokenizer(text, add_special_tokens=False)["input_ids"])


def penalties_of(body) -> dict:
    """The request's repetition and beam settings (None: the run's eval.decoding); stop strings are matched here
    instead."""
    return {
        "repetition_penalty": body.repetition_penalty,
        "no_repeat_ngram_size": body.no_repeat_ngram_size,
        "num_beams": body.num_beams,
        "length_penalty": body.length_penalty,
    }


async def complete(run, messages: list[dict], max_new: int, body, stops: list[str]) -> tuple[str, str, int]:
    """(answer, finish_reason, completion tokens). Concurrent requests with the same settings share one batch."""
    predictor = run.predictor
    decoding = penalties_of(body)
    work = lambda prompts: predictor.generate(prompts, max_new, body.temperature, body.top_p, decoding)  # noqa: E731
    key = ("generate", max_new, body.temperature, body.top_p, *decoding.values())  # a batch shares its settings
    answer = (await run.batcher(key, work).submit([messages]))[0]
    answer, stopped = cut_at_stop(answer, stops)
    used = len(predictor.tokenizer(answer, add_special_tokens=False)["input_ids"])
    return answer, "length" if used >= max_new and not stopped else "stop", used


async def stream_chunks(
    run, messages: list[dict], max_new: int, body, stops: list[str], ident: str, kind: str, prompt_used: int, store=None
):
    """`data: {chunk}` lines as the model writes, then the finish reason, usage if asked, then `data: [DONE]`.
    With a `store` (serve --collect), the whole answer is recorded under the stream's id before its last event,
    so feedback on it can follow at once; a stream the client leaves early is not recorded.

    Streams that arrive together share one batched generation (tasks/generation/streams.py); each gets its
    row's text through its own queue, and the event loop never waits on the model."""
    from ..tasks.generation.streams import generate_streams

    loop, queue, done = asyncio.get_running_loop(), asyncio.Queue(), object()
    push = lambda piece: loop.call_soon_threadsafe(queue.put_nowait, piece)  # noqa: E731  (called from the worker thread)
    cancel = threading.Event()  # set when the client leaves or a stop sequence matches: the model stops this row
    predictor = run.predictor
    decoding = penalties_of(body)
    settings = predictor.decoding_with(decoding)

    def work(items):
        return generate_streams(
            predictor.model,
            predictor.tokenizer,
            [m for m, _, _ in items],
            lambda row, text: items[row][1](text),
            max_new,
            body.temperature,
            body.top_p,
            [c.is_set for _, _, c in items],
            settings,
        )

    key = ("stream", max_new, body.temperature, body.top_p, *decoding.values())
    job = asyncio.ensure_future(run.batcher(key, work).submit([(messages, push, cancel)]))
    job.add_done_callback(lambda _: queue.put_nowait(done))  # after every piece the worker pushed
    try:
        record = (
            None
            if store is None
            else lambda text: asyncio.to_thread(
                store.record, run.name, run.version, run.task, [(messages, text, None)], [ident]
            )
        )
        async for event in _events(run, job, queue, done, body, stops, ident, kind, prompt_used, max_new, record):
            yield event
    finally:  # also when the client disconnects: Starlette cancels this generator
        cancel.set()


async def _events(run, job, queue, done, body, stops, ident, kind, prompt_used, max_new, record=None):
    created, text, finish = int(time.time()), "", None
    yield _event(ident, kind, created, run.name, {"role": "assistant", "content": ""}, None)
    while (piece := await queue.get()) is not done:
        cut, stopped = cut_at_stop(text + piece, stops)
        if cut[len(text) :]:
            yield _event(ident, kind, created, run.name, {"content": cut[len(text) :]}, None)
        text = cut
        if stopped:
            finish = "stop"
            break
    if finish is None and job.exception() is not None:
        error = {"message": f"generation failed: {job.exception()}", "type": "server_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
        yield "data: [DONE]\n\n"
        return
    used = (
        job.result()[0] if finish is None else len(run.predictor.tokenizer(text, add_special_tokens=False)["input_ids"])
    )
    finish = finish or ("length" if used >= max_new else "stop")
    if record is not None:
        await record(text)
    yield _event(ident, kind, created, run.name, {}, finish)
    if (body.stream_options or {}).get("include_usage"):
        yield _usage_event(ident, kind, created, run.name, prompt_used, used)
    yield "data: [DONE]\n\n"


def _usage_event(ident: str, kind: str, created: int, model: str, prompt: int, completion: int) -> str:
    """OpenAI's last chunk when stream_options.include_usage is set: no choices, the token counts."""
    chunk = {
        "id": ident,
        "object": "chat.completion.chunk" if kind == "chat.completion" else "text_completion",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
    return f"data: {json.dumps(chunk)}\n\n"


def _event(ident: str, kind: str, created: int, model: str, delta: dict, finish: str | None) -> str:
    if kind == "chat.completion":
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    else:
        chunk = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}],
        }
    return f"data: {json.dumps(chunk)}\n\n"
