"""The event loop's lag, sampled inside the server: how late a timer fires is how long the loop was busy.

Benchmarks need the server's own stalls (a collector pass, a big batch serialised in one go), which the
latency a client sees mixes with its own. Off unless ``server.loop_lag_file`` is set: then a task sleeps
``INTERVAL`` at a time, records how much later than asked it woke, and once a second appends one JSON line
``{"at": <time.monotonic()>, "lag_ms": [...], "gc_ms": [[generation, ms], ...]}`` to the file
(CLOCK_MONOTONIC is the same in every process on Linux, so a benchmark picks the lines of its measuring
window). ``gc_ms`` lists the garbage collector's passes of a millisecond or more, which stall the loop as
long as they last. Nothing of it runs per message.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path

import orjson

INTERVAL = 0.01  # seconds between samples: a stall longer than this shows at its full length
FLUSH_EVERY = 1.0  # seconds between lines written
GC_REPORTED_MS = 1.0  # collector passes shorter than this are left out


class _CollectorPauses:
    """Times each garbage-collector pass (``gc.callbacks``), keeping those of ``GC_REPORTED_MS`` or more."""

    def __init__(self) -> None:
        self.pauses: list[list[float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif (ms := (time.perf_counter() - self._started) * 1000) >= GC_REPORTED_MS:
            self.pauses.append([info["generation"], round(ms, 2)])

    def take(self) -> list[list[float]]:
        pauses, self.pauses = self.pauses, []
        return pauses


async def sample_forever(path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Sample until cancelled; what was sampled since the last line is written on the way out too."""
    lags: list[float] = []
    flushed = clock()
    collector = _CollectorPauses()
    gc.callbacks.append(collector)
    try:
        while True:
            asked = clock()
            await asyncio.sleep(INTERVAL)
            woke = clock()
            lags.append(round(max(0.0, woke - asked - INTERVAL) * 1000, 2))
            if woke - flushed >= FLUSH_EVERY:
                _append(path, woke, lags, collector.take())
                lags, flushed = [], woke
    finally:
        gc.callbacks.remove(collector)
        if lags:
            _append(path, clock(), lags, collector.take())


def _append(path: Path, at: float, lags: list[float], pauses: list[list[float]]) -> None:
    # a line of a few hundred bytes once a second: a blocking write is cheaper than a thread hop
    with path.open("ab") as out:
        out.write(orjson.dumps({"at": at, "lag_ms": lags, "gc_ms": pauses}) + b"\n")


async def watch_lag(interval: float, observe: Callable[[float], None]) -> None:
    """Tell ``observe`` how many seconds late each sleep of ``interval`` woke, until cancelled: the metrics'
    always-on view of the same lag (one timer every ``interval``, nothing per message)."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - asked - interval))
