"""The request batcher of `tunesmith serve`: grouping, the wait bound and the gap rule."""

import asyncio
import time

from tunesmith.serve.batching import Batcher


def _calls(max_wait_s: float, max_gap_s: float | None, late_s: float) -> tuple[list[list[int]], float]:
    """Two requests together, a third `late_s` later; returns the batches `work` saw and when the first was answered."""
    calls = []

    def work(items):
        calls.append(list(items))
        return [item * 10 for item in items]

    async def scenario():
        batcher = Batcher(work, max_batch=32, max_wait_s=max_wait_s, max_gap_s=max_gap_s)
        start = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit([1]))
        answered = []
        first.add_done_callback(lambda _f: answered.append(time.perf_counter() - start))
        second = asyncio.ensure_future(batcher.submit([2, 3]))
        await asyncio.sleep(late_s)
        third = await batcher.submit([4])
        answers = await asyncio.gather(first, second)
        await batcher.close()
        assert answers == [[10], [20, 30]] and third == [40]  # each request gets its own items' results, in order
        return answered[0]

    delay = asyncio.run(scenario())
    return calls, delay


def test_requests_within_the_wait_share_one_call():
    calls, _ = _calls(max_wait_s=1.0, max_gap_s=None, late_s=0.1)
    assert calls == [[1, 2, 3, 4]]


def test_a_quiet_gap_ends_the_wait_early():
    # the burst (1, 2, 3) goes at once when nothing follows it for 20 ms, not after the 1 s bound
    calls, delay = _calls(max_wait_s=1.0, max_gap_s=0.02, late_s=0.3)
    assert calls == [[1, 2, 3], [4]]
    assert delay < 0.25  # answered before the late request came, not after the 1 s bound


def test_a_full_batch_goes_without_waiting():
    calls = []

    async def scenario():
        batcher = Batcher(lambda items: calls.append(list(items)) or items, max_batch=3, max_wait_s=5.0)
        start = time.perf_counter()
        await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]))
        await batcher.close()
        return time.perf_counter() - start

    assert asyncio.run(scenario()) < 2.0
    assert calls == [[1, 2, 3]]
