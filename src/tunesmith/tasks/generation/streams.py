"""Several conversations answered by one batched `generate`, each answer streamed to its own sink as it grows.

transformers' TextIteratorStreamer takes one sequence; a server holding 8 streaming clients would then run 8
generations side by side, each a batch of one, fighting for the same cores. Here the streamer receives the
batch's new tokens at every step and hands each row's new text to that row's sink."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .formatting import render, stop_token_ids
from .generate import _fit_context, _left_padded, _sampling, as_messages, beam_settings, penalties


class RowStreamer(BaseStreamer):
    """Decodes each row's tokens so far and sends `sink(row, new_text)`; text that ends in an unfinished
    multi-byte character waits for the next token, and a row stops sending at its first stop token."""

    def __init__(self, tokenizer, rows: int, sink):
        self.tokenizer, self.sink, self.prompt_seen = tokenizer, sink, False
        self.stops = set(stop_token_ids(tokenizer))
        self.tokens, self.sent = [[] for _ in range(rows)], [""] * rows
        self.finished = [False] * rows

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate's first call hands over the prompt
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.tokens), -1)[:, -1].tolist()):
            if self.finished[row]:
                continue
            if token in self.stops:
                self.finished[row] = True
                continue
            self.tokens[row].append(token)
            self._send(row, final=False)

    def end(self) -> None:
        for row in range(len(self.tokens)):
            self._send(row, final=True)

    def _send(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        if len(text) > len(self.sent[row]):
            self.sink(row, text[len(self.sent[row]) :])
            self.sent[row] = text


class RowsCancelled(StoppingCriteria):
    """Ends a row once its `cancelled()` says so (its client left, or a stop sequence matched); the batch ends when
    every row has, instead of running on to max_new_tokens for nobody. Beam search asks about each of a row's
    candidate sequences (rows x candidates, in row order): they all end with their row."""

    def __init__(self, cancelled: list):
        self.cancelled = cancelled

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        rows = torch.tensor([bool(done()) for done in self.cancelled], dtype=torch.bool, device=input_ids.device)
        return rows.repeat_interleave(input_ids.shape[0] // len(self.cancelled))


@torch.inference_mode()
def generate_streams(
    model,
    tokenizer,
    prompts: list,
    sink,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    cancelled: list | None = None,
    decoding=None,
) -> list[int]:
    """One left-padded batch; `sink(row, text)` as text appears; `cancelled[row]()` true ends that row early
    (the caller matches stop strings and cancels); `decoding`: the penalties every row of the batch shares.
    Returns each row's count of new tokens."""
    texts = [render(tokenizer, as_messages(p), add_generation_prompt=True) for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = _fit_context(ids, getattr(model.config, "max_position_embeddings", None), max_new_tokens)
    enc = {k: v.to(model.device) for k, v in _left_padded(ids, tokenizer.pad_token_id).items()}
    streamer = RowStreamer(tokenizer, len(ids), sink)
    model.eval()
    # transformers cannot stream beam search: with beams the rows reach their sinks whole when the batch ends (the
    # caller still cuts them at its stop strings); a row whose client left still ends its candidates early
    beams = beam_settings(decoding)
    stopping = StoppingCriteriaList([RowsCancelled(cancelled)]) if cancelled else None
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        streamer=None if beams else streamer,
        stopping_criteria=stopping,
        **_sampling(temperature, top_p),
        **penalties(decoding),
        **beams,
    )
    if beams:
        streamer.prompt_seen = True
        for step in out[:, enc["input_ids"].shape[1] :].T:  # the streamer's own bookkeeping: stop tokens, bytes
            streamer.put(step)
        streamer.end()
    return [len(t) for t in streamer.tokens]
