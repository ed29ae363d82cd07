"""Group concurrent requests into one forward pass: a short queue per model, bounded batch and wait."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Batcher:
    """`await batcher.submit(items)` -> one result per item. Items that arrive within `max_wait_s` of each other
    (up to `max_batch`) go through `work(all_items)` together, in a worker thread: the event loop never waits on
    the model, and 16 clients cost about one batched call, not 16. The wait also ends when no request has come
    for `max_gap_s`: clients answered by one batch send their next requests in a burst, and once the burst is
    over, waiting longer only leaves the model idle (on a CPU a batch of 10 short texts costs ~8 times one, so a
    bigger batch saves little: int8 MiniLM at 16 clients, 145-156 requests/s with a fixed 10 ms wait, 161-165
    with a 2 ms gap inside 20 ms)."""

    work: callable
    max_batch: int = 32
    max_wait_s: float = 0.01
    max_gap_s: float | None = None
    retry_alone: bool = True  # False where work has side effects (streams already sent text: a rerun would repeat it)
    observe: callable | None = None  # told each batched call's size (metrics)
    _queue: asyncio.Queue | None = field(default=None, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)
    _busy: bool = field(default=False, init=False)

    def idle(self) -> bool:
        """Nothing queued and nothing being computed: it can be closed without failing a request."""
        return not self._busy and (self._queue is None or self._queue.empty())

    async def submit(self, items: list) -> list:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((items, future))
        return await future

    async def _run(self) -> None:
        while True:
            self._busy = False
            pending = [await self._queue.get()]
            self._busy = True
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while sum(len(items) for items, _ in pending) < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if self.max_gap_s is not None:
                    timeout = min(timeout, self.max_gap_s)
                if timeout <= 0:
                    break
                try:
                    pending.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            await self._answer(pending)

    async def _answer(self, pending: list) -> None:
        """One batched call; when it fails, each request alone, so one client's bad input fails only its own request."""
        flat = [item for items, _ in pending for item in items]
        if self.observe:
            self.observe(len(flat))
        try:
            results = await asyncio.to_thread(self.work, flat)
        except Exception as exc:  # noqa: BLE001  (each waiting request gets an answer or its own error; the worker lives on)
            if len(pending) > 1 and self.retry_alone:
                for one in pending:
                    await self._answer([one])
                return
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for items, future in pending:
            if not future.done():
                future.set_result(results[start : start + len(items)])
            start += len(items)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self.stop()
