"""Group commit: writes that arrive while one is committed go out together, each caller gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from core.group_commit import GroupCommit


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_on = fail_on

    async def flush(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_on in items:
            raise RuntimeError(f"cannot store {self.fail_on}")
        return [i * 10 for i in items]


async def test_first_write_goes_alone_and_the_rest_share_the_next_flush() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(i)) for i in range(2, 6)]
    await asyncio.sleep(0)
    assert recorder.batches == [[1]]  # went out at once, without waiting for company
    recorder.release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50]
    assert recorder.batches == [[1], [2, 3, 4, 5]]
    assert group.batches == 2


async def test_a_failed_flush_fails_only_its_own_batch() -> None:
    recorder = Recorder(fail_on=3)
    group = GroupCommit(recorder.flush, max_batch=2)
    tasks = [asyncio.create_task(group.submit(i)) for i in range(1, 6)]
    recorder.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert recorder.batches == [[1, 2], [3, 4], [5]]
    assert results[:2] == [10, 20] and results[4] == 50
    assert all(isinstance(r, RuntimeError) and "cannot store 3" in str(r) for r in results[2:4])


async def test_a_flush_that_miscounts_its_results_is_an_error_not_a_misdelivery() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    group = GroupCommit(short)
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        await asyncio.gather(group.submit(1), group.submit(2))


async def test_a_cancelled_caller_is_skipped_and_close_waits_for_the_rest() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(group.submit(2))
    kept = asyncio.create_task(group.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    await group.close()
    assert recorder.batches == [[1], [3]]
    assert await first == 10 and await kept == 30


async def test_a_flush_cancelled_mid_write_tells_every_waiting_caller() -> None:
    """The writer task cancelled (shutdown) while a batch is in the database: its callers and those queued
    behind it are cancelled, none waits for ever."""
    recorder = Recorder()
    group = GroupCommit(recorder.flush)
    writing = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    queued = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    (drain,) = [t for t in asyncio.all_tasks() if t.get_name() == "group-commit"]
    drain.cancel()
    done, pending = await asyncio.wait([writing, queued], timeout=5)
    assert not pending and all(t.cancelled() for t in done)
    assert recorder.batches == [[1]]


async def test_the_items_marked_first_resume_before_the_rest_of_their_batch() -> None:
    """The answer that completes a query sits anywhere in a batch of hundreds; its caller need not wait for
    every caller queued before it to run."""
    recorder = Recorder()
    group = GroupCommit(recorder.flush, first=lambda item: item % 2 == 0)
    resumed: list[int] = []

    async def caller(item: int) -> None:
        await group.submit(item)
        resumed.append(item)

    tasks = [asyncio.create_task(caller(i)) for i in range(1, 7)]
    await asyncio.sleep(0)
    recorder.release.set()
    await asyncio.gather(*tasks)
    assert recorder.batches == [[1, 2, 3, 4, 5, 6]]  # written in queue order
    assert resumed == [2, 4, 6, 1, 3, 5]
