"""The event loop's lag, sampled inside the server: how late a timer fires is how long the loop was busy.

Benchmarks need the server's own stalls (a collector pass, a big batch serialised in one go), which the
latency a client sees mixes with its own. Off unless ``server.loop_lag_file`` is set: then a task sleeps
``INTERVAL`` at a time, records how much later than asked it woke, and once a second appends one JSON line
``{"at": <time.monotonic()>, "lag_ms": [...]}`` to the file (CLOCK_MONOTONIC is the same in every process
on Linux, so a benchmark picks the lines of its measuring window). Nothing of it runs per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from aiohttp import web

INTERVAL = 0.01  # seconds between samples: a stall longer than this shows at its full length
FLUSH_EVERY = 1.0  # seconds between lines written


async def sample_forever(path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Sample until cancelled; what was sampled since the last line is written on the way out too."""
    lags: list[float] = []
    flushed = clock()
    try:
        while True:
            asked = clock()
            await asyncio.sleep(INTERVAL)
            woke = clock()
            lags.append(round(max(0.0, woke - asked - INTERVAL) * 1000, 2))
            if woke - flushed >= FLUSH_EVERY:
                _append(path, woke, lags)
                lags, flushed = [], woke
    finally:
        if lags:
            _append(path, clock(), lags)


def _append(path: Path, at: float, lags: list[float]) -> None:
    # a line of a few hundred bytes once a second: a blocking write is cheaper than a thread hop
    with path.open("ab") as out:
        out.write(orjson.dumps({"at": at, "lag_ms": lags}) + b"\n")


def loop_lag_ctx(path: Path | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running the probe when ``path`` is set (``server.loop_lag_file``)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if path is None:
            yield
            return
        task = asyncio.create_task(sample_forever(path), name="loop-lag-probe")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx
