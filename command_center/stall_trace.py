"""Stall tracer: what the event loop was running while it stalled (diagnostics, off unless configured).

The loop-lag probe (``loop_lag.py``) says how long the loop was busy, not with what, and a profile of the whole
run hides a 150 ms stall among fifteen seconds of ordinary work. Here a heartbeat task stamps the time every
``INTERVAL``; a watchdog thread looks at the stamp, and while it is more than ``threshold_ms`` old it samples
the loop thread's stack (``sys._current_frames()``) every ``INTERVAL``. When the stall ends, one JSON line is
appended to the file::

    {"at": <time.monotonic()>, "stall_ms": 143.2, "samples": 9,
     "stacks": [[6, "innermost frame <- its caller <- ..."], ...], "gc_ms": [[2, 118.0]],
     "loop_cpu_ms": 12.0, "loop_waited_ms": 96.0, "others_cpu_ms": 30.1}

``stacks`` are the distinct stacks sampled, most frequent first. A pass of the garbage collector, or a C call
that keeps the GIL, cannot be sampled while it runs (the thread needs the GIL): the collector's passes during
the stall are listed in ``gc_ms`` (generation, ms) instead, and the C call shows as the Python line that made it.

The samples are biased: the watchdog can only take one while the loop thread lets go of the GIL, so a stall
shows at the lines that release it (a socket call, an SRTP call, an allocation) whatever it was really spent
on. What the time went to is therefore measured beside them, from the kernel's per-thread accounting
(``/proc/self/task/TID/schedstat``) and the process's CPU clock, between the tick before the stall and the
tick that saw it end: ``loop_cpu_ms``, the loop thread running (its own work: the stacks say which);
``loop_waited_ms``, the loop thread ready but given no core (another process on it: the machine, not the
server); ``others_cpu_ms``, the server's other threads running (with the rest of the stall, neither running
nor queued, this is the loop waiting for the GIL they hold, or for a blocking call). Absent where the kernel
does not keep schedstat.
Costs nothing per message: one timer every 10 ms and a thread that wakes as often.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import orjson

INTERVAL = 0.01  # seconds between heartbeats, and between samples of a stalled loop
DEPTH = 30  # frames kept per stack, innermost first
_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def describe(frame: FrameType | None, depth: int = DEPTH) -> str:
    """A stack as one line, innermost first: ``path:line function <- ...`` (paths relative to the project or
    to site-packages, so lines from two machines compare)."""
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        code = frame.f_code
        parts.append(f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts)


def _short(path: str) -> str:
    if path.startswith(_ROOT):
        path = path[len(_ROOT) :]
    marker = "site-packages/"
    return path[path.index(marker) + len(marker) :] if marker in path else path


class _Times:
    """Where a moment's CPU time stood: the loop thread's time running and ready-but-not-running, and the whole
    process's CPU (seconds)."""

    __slots__ = ("loop_run", "loop_wait", "process")

    def __init__(self, loop_run: float, loop_wait: float, process: float) -> None:
        self.loop_run, self.loop_wait, self.process = loop_run, loop_wait, process


def _times(thread_id: int) -> _Times | None:
    """The kernel's accounting of thread ``thread_id`` (a native id) and the process's CPU clock; None where
    the kernel keeps no schedstat."""
    try:
        with open(f"/proc/self/task/{thread_id}/schedstat", "rb") as handle:
            run_ns, wait_ns = handle.read().split()[:2]
    except (OSError, ValueError):
        return None
    return _Times(int(run_ns) / 1e9, int(wait_ns) / 1e9, time.process_time())


class _Stall:
    """What one stall looked like while it lasted."""

    def __init__(self, since: float, times: _Times | None) -> None:
        self.since = since  # the last heartbeat before it (monotonic)
        self.stacks: Counter[str] = Counter()
        self.late = 0.0
        self.times = times  # at the watchdog's tick before the stall was seen


class StallTracer:
    """``async with StallTracer(path, threshold_ms):`` traces while the block runs (the heartbeat runs on the
    loop that entered it, the watchdog in a daemon thread of its own)."""

    def __init__(self, path: Path, threshold_ms: float) -> None:
        self._path = path
        self._threshold = threshold_ms / 1000
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._gc: list[tuple[float, int, float]] = []  # (started, generation, ms) of recent collector passes
        self._gc_started = 0.0
        self.stalls = 0  # stalls written, for tests

    async def __aenter__(self) -> StallTracer:
        self._beat = time.monotonic()
        loop_thread = threading.get_ident()
        gc.callbacks.append(self._on_gc)
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="stall-trace-heartbeat")
        self._thread = threading.Thread(target=self._watch, args=(loop_thread, threading.get_native_id()),
                                        name="stall-trace", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)

    async def _beat_forever(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(INTERVAL)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._gc_started = now
        else:
            self._gc.append((self._gc_started, info["generation"], round((now - self._gc_started) * 1000, 2)))
            if len(self._gc) > 256:
                del self._gc[:128]

    def _watch(self, loop_thread: int, loop_native_id: int) -> None:
        stall: _Stall | None = None
        calm = _times(loop_native_id)  # at the last tick that saw the loop turning
        while not self._stop.wait(INTERVAL):
            beat = self._beat
            now = _times(loop_native_id)
            late = time.monotonic() - beat - INTERVAL
            if late > self._threshold:
                if stall is None or stall.since != beat:
                    if stall is not None:  # a beat came and went between two samples: that stall is over
                        self._write(stall, now)
                    stall = _Stall(beat, calm)
                stall.late = late
                stall.stacks[describe(sys._current_frames().get(loop_thread))] += 1
            else:
                if stall is not None:
                    stall.late = max(stall.late, beat - stall.since - INTERVAL)  # the beat that ended it
                    self._write(stall, now)
                    stall = None
                calm = now
        if stall is not None:
            self._write(stall, _times(loop_native_id))

    def _write(self, stall: _Stall, end: _Times | None) -> None:
        self.stalls += 1
        passes = [[generation, ms] for started, generation, ms in list(self._gc) if started >= stall.since]
        line = {
            "at": stall.since,
            "stall_ms": round(stall.late * 1000, 1),
            "samples": sum(stall.stacks.values()),
            "stacks": [[count, stack] for stack, count in stall.stacks.most_common()],
            "gc_ms": passes,
        }
        start = stall.times
        if start is not None and end is not None:
            loop_cpu = end.loop_run - start.loop_run
            line["loop_cpu_ms"] = round(loop_cpu * 1000, 1)
            line["loop_waited_ms"] = round((end.loop_wait - start.loop_wait) * 1000, 1)
            line["others_cpu_ms"] = round(max(0.0, end.process - start.process - loop_cpu) * 1000, 1)
        with self._path.open("ab") as out:  # the watchdog's own thread: the loop is not held up by it
            out.write(orjson.dumps(line) + b"\n")


def read(path: Path) -> Iterator[dict[str, object]]:
    """The stalls written to ``path`` (for tests and benchmarks)."""
    if path.exists():
        for line in path.read_bytes().splitlines():
            yield orjson.loads(line)
