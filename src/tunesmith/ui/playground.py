"""The playground: one input, the tuned model's answer beside the base model's, through `serve`'s own code
(the same predictor, batcher, classification and completion functions that answer /v1/classify and
/v1/chat/completions). Models load on first use; only the last few stay in memory."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

from ..errors import TunesmithError
from ..serve.chat import complete
from ..serve.served import Limits, Served, classify_items, top_labels

KEEP = 2  # runs (tuned and base models) held at once: a generation run's pair is two full models
MAX_TEXT = 8_000
BASE_NOTE = (
    "This run kept no base model to answer with (the pre-trained model has no head for the task: supervised and "
    "few-shot classification, multi-label, entity and regression runs keep the linear base line that scored it "
    "unless eval.baseline is none; continual runs and prompt-based few-shot keep none). Only the tuned model "
    "answers here."
)


class Playground:
    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits(max_tokens=256)
        self._loaded: OrderedDict[str, dict] = OrderedDict()
        self._lock = asyncio.Lock()

    async def models(self, name: str, run_dir: Path) -> dict:
        """{"tuned": Served, "base": Served | None} for a finished run, loaded once (off the event loop)."""
        async with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            pair = await asyncio.to_thread(_load, name, run_dir, self.limits)
            self._loaded[name] = pair
            while len(self._loaded) > KEEP:
                old = self._loaded.popitem(last=False)[1]
                for served in filter(None, old.values()):
                    for batcher in served.batchers.values():
                        await batcher.close()
            return pair

    async def answer(self, name: str, run_dir: Path, text: str, max_tokens: int = 128) -> dict:
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise TunesmithError(f"Type a text of 1 to {MAX_TEXT} characters.")
        pair = await self.models(name, run_dir)
        tuned, base = pair["tuned"], pair["base"]
        if tuned.generative:
            messages = [{"role": "user", "content": text}]
            max_new = max(1, min(int(max_tokens), self.limits.max_tokens))
            settings = SimpleNamespace(temperature=0.0, top_p=1.0)  # greedy: the same answer every time
            answers = await asyncio.gather(
                *(complete(s, messages, max_new, settings, []) for s in (tuned, base) if s is not None)
            )
            return {"kind": "generation", "tuned": answers[0][0], "base": answers[1][0] if base else None}
        if (getattr(tuned.predictor, "columns", None) or {}).get("pair"):
            raise TunesmithError("This run reads text pairs; the playground sends one text. Use /v1/classify of serve.")
        rows = await asyncio.gather(*(_classify(s, text) for s in (tuned, base) if s is not None))
        answer = {"kind": tuned.task, "tuned": rows[0], "base": rows[1] if base else None}
        if base is None:
            answer["base_note"] = BASE_NOTE
        return answer


async def _classify(served: Served, text: str) -> dict:
    (row,) = await served.batcher("classify", lambda items: classify_items(served.predictor, items)).submit([text])
    return top_labels(row, 20) if "probs" in row else row


def _load(name: str, run_dir: Path, limits: Limits) -> dict:
    tuned = Served(name, run_dir, limits)
    try:
        base = Served(f"{name} (base)", run_dir, limits, base=True)
    except TunesmithError:  # a run that kept no probe of its base model: only the tuned model answers
        base = None
    return {"tuned": tuned, "base": base}
