"""Group commit: many concurrent small writes become one transaction, each caller gets its own result.

When a hundred queries' agencies answer within the same few milliseconds, one transaction per answer
means a hundred pool checkouts and a hundred WAL flushes queued behind each other, and the last answer
waits for all of them. Here the first write goes out at once (no added delay when idle); writes that
arrive while it is being committed wait for it and then go out together in the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``await submit(item)`` → the item's result from ``flush(batch)``, which must return one result per
    item, in order. A flush that raises fails every item of its batch with that exception."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        first: Callable[[T], bool] | None = None,
    ) -> None:
        """``first``: the items whose callers are answered before the rest of their batch (they resume first,
        in order, then the others in order); a caller at the end of a batch of hundreds otherwise waits for
        every caller before it to run."""
        self._flush = flush
        self._max_batch = max_batch
        self._first = first
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # flushes run, for health and benchmarks

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def close(self) -> None:
        """Finish what is queued."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def _drain(self) -> None:
        live: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                live = [(item, future) for item, future in batch if not future.cancelled()]
                if not live:
                    continue
                self.batches += 1
                try:
                    results = await self._flush([item for item, _ in live])
                    if len(results) != len(live):
                        raise RuntimeError(f"flush returned {len(results)} results for {len(live)} items")
                except Exception as exc:
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                answered = list(zip(live, results, strict=True))
                if self._first is not None:
                    first = self._first
                    answered.sort(key=lambda pair: not first(pair[0][0]))  # stable: queue order within each part
                for (_, future), result in answered:
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None
            # Only when cancelled mid-flush: the batch being written and the ones behind it are told so (their
            # callers would otherwise wait for ever); what the cancelled transaction did is rolled back.
            for _, future in [*live, *self._queue]:
                if not future.done():
                    future.cancel()
            self._queue = []
