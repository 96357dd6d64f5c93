"""Batched, durable position writes: many small requests become one COPY, each caller learns its result.

Callers (unit sockets, batch uploads) ``await write(positions)`` and are answered once their positions
are committed, so a unit deletes from its outbox only what is durable. The writer flushes when a batch
is full or ``max_delay`` has passed. If the database is down, batches are kept and retried with backoff
(ingest slows, nothing is lost); past ``max_pending`` positions new writes are refused with 503 instead
of growing memory.

Up to ``max_flushes`` batches are committed at once, each of at most ``max_batch`` positions. One flush at a
time capped ingest at what one database backend commits (about 10,000 rows a second here: a second's worth
of 10,000 units waited behind it, acks seconds late); and a batch of 5,000 answered in one go woke 5,000
sockets' tasks in one turn of the loop, a stall of 100-300 ms for every timer and screen. Smaller batches
in parallel keep the database's cores busy, and their callers are answered a slice at a time
(``ANSWER_SLICE``), letting the loop turn in between. The order in which batches commit does not matter:
a (unit, seq) is stored once, and each unit's latest position only moves forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Protocol

from core.errors import AppError, ServiceUnavailable
from core.ids import UnitId
from persistence.models import Position
from persistence.port import TelemetryStore

log = logging.getLogger(__name__)

Key = tuple[UnitId, int]

ANSWER_SLICE = 256  # callers answered per turn of the loop once their batch is committed


class CommitWaiter(Protocol):
    """Told once what became of the positions handed to ``PositionWriter.enqueue``, by the writer itself.

    An ``asyncio.Future`` is one (``write`` hands one back to await). A unit's socket is another
    (``command_center.unit_socket``): told directly, it writes the ack there and then, without a future, a
    done callback and a scheduled call for each of 10,000 messages a second. ``set_result`` and
    ``set_exception`` must not raise: the writer tells the rest of the batch just after."""

    def done(self) -> bool: ...
    def set_result(self, result: AbstractSet[Key], /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(slots=True)
class _Batch:
    """What one flush commits: the callers' positions and, in the same order, who waits for them."""

    positions: list[Sequence[Position]]
    waiters: list[CommitWaiter]


class PositionWriter:
    def __init__(self, store: TelemetryStore, *, max_batch: int = 1_000, max_delay: float = 0.05,
                 max_pending: int = 200_000, max_flushes: int = 4,
                 answer_slice: int = ANSWER_SLICE) -> None:  # fmt: skip
        self._store = store
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_pending = max_pending
        # Each caller's positions and its future, in two queues kept in step (not an object per caller: under
        # load a second's worth of callers wait here, and every one more tracked object each is walked by the
        # garbage collector's passes).
        self._queue: deque[Sequence[Position]] = deque()
        self._waiters: deque[CommitWaiter] = deque()
        self._pending = 0
        self._has_work = asyncio.Event()  # set while anything is queued (or on close)
        self._full = asyncio.Event()  # set when a whole batch is waiting: flush without the delay
        self._answer_slice = answer_slice
        self._slots = asyncio.Semaphore(max_flushes)  # batches being committed at once
        self._flushes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0  # positions committed (new or duplicate), for health and benchmarks
        self.failures = 0  # flushes that failed and were retried
        self._backoff = 0.0  # seconds before the next retry; 0 while the database answers

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def degraded(self) -> bool:
        """True while the last flush failed (the database is unreachable)."""
        return self._backoff > 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="position-writer")

    async def close(self) -> None:
        """Flush what is queued (bounded by a short grace period), then stop."""
        self._closing = True
        self._has_work.set()
        self._full.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        for flush in list(self._flushes):  # only those the grace period cut short
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ServiceUnavailable("server is shutting down; resend later"))
        self._queue.clear()
        self._waiters.clear()

    def write(self, positions: Sequence[Position]) -> asyncio.Future[AbstractSet[Key]]:
        """Queue the positions for commit; await the answer: the keys that were new (the others were stored before).

        A plain function returning the future the caller awaits (no coroutine per call). The set answers for
        the whole batch the positions were committed in (one set shared by its callers, not one built per
        caller): ask it about your own keys only. Raises ``ServiceUnavailable`` at once when the writer is not
        running or too much is waiting."""
        done: asyncio.Future[AbstractSet[Key]] = asyncio.get_running_loop().create_future()
        self.enqueue(positions, done)
        return done

    def enqueue(self, positions: Sequence[Position], waiter: CommitWaiter) -> None:
        """``write``, telling ``waiter`` (see ``CommitWaiter``) instead of a future of its own."""
        if not positions:
            waiter.set_result(frozenset())
            return
        if self._closing or self._task is None:
            raise ServiceUnavailable("position writer is not running")
        if self._pending + len(positions) > self._max_pending:
            raise ServiceUnavailable(
                f"{self._pending} positions are waiting for the database; resend later (nothing was stored)"
            )
        self._queue.append(positions)
        self._waiters.append(waiter)
        self._pending += len(positions)
        self._has_work.set()
        if self._pending >= self._max_batch:
            self._full.set()

    async def _run(self) -> None:
        try:
            while True:
                await self._has_work.wait()
                if not self._closing and self._pending < self._max_batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._max_delay)
                await self._slots.acquire()  # while every slot commits, the next batch fills up meanwhile
                batch = self._take_batch()
                if batch.waiters:
                    flush = asyncio.create_task(self._flush(batch), name="position-writer-flush")
                    self._flushes.add(flush)
                    flush.add_done_callback(self._flush_done)
                else:
                    self._slots.release()
                if not self._queue:
                    if self._closing:
                        break
                    self._has_work.clear()
        finally:
            if self._flushes:  # closing: what was taken is committed before the writer ends
                await asyncio.gather(*self._flushes, return_exceptions=True)

    def _flush_done(self, flush: asyncio.Task[None]) -> None:
        self._flushes.discard(flush)
        self._slots.release()
        if not flush.cancelled() and flush.exception() is not None:
            log.error("position writer: a flush failed", exc_info=flush.exception())

    def _take_batch(self) -> _Batch:
        batch = _Batch([], [])
        count = 0
        queue = self._queue
        while queue and (not batch.positions or count + len(queue[0]) <= self._max_batch):
            positions = queue.popleft()
            batch.positions.append(positions)
            batch.waiters.append(self._waiters.popleft())
            count += len(positions)
        if self._pending - count < self._max_batch and not self._closing:
            self._full.clear()
        return batch

    async def _flush(self, batch: _Batch) -> None:
        try:
            await self._commit(batch)
        except asyncio.CancelledError:  # closing cut it short: its callers resend (their units keep them)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(ServiceUnavailable("server is shutting down; resend later"))
            raise

    async def _commit(self, batch: _Batch) -> None:
        positions = [p for caller in batch.positions for p in caller]
        while True:
            try:
                inserted = await self._store.insert_positions(positions)
            except AppError as exc:
                # A permanent refusal (e.g. a unit that does not exist): answer each request on its own.
                log.warning("position batch refused (%s); retrying requests one by one", exc.message)
                await self._flush_one_by_one(batch)
                return
            except Exception as exc:  # the database is unreachable: keep the batch and retry
                self.failures += 1
                self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
                log.warning("position write failed (%s); %d pending, retry in %.1fs", exc, self._pending, self._backoff)
                await asyncio.sleep(self._backoff)
                continue
            self._backoff = 0.0
            self.written += len(positions)
            self._pending -= len(positions)
            new = frozenset(inserted)
            waiters = batch.waiters
            for start in range(0, len(waiters), self._answer_slice):
                if start:
                    await asyncio.sleep(0)  # the callers answered so far run before the next slice is woken
                for waiter in waiters[start : start + self._answer_slice]:
                    if not waiter.done():
                        waiter.set_result(new)
            return

    async def _flush_one_by_one(self, batch: _Batch) -> None:
        for positions, waiter in zip(batch.positions, batch.waiters, strict=True):
            try:
                inserted = await self._store.insert_positions(positions)
            except Exception as exc:
                if not waiter.done():
                    waiter.set_exception(exc)
            else:
                self.written += len(positions)
                if not waiter.done():
                    waiter.set_result(frozenset(inserted))
            self._pending -= len(positions)
