"""The stall tracer (command_center/stall_trace.py): a stall of the loop is written with the code that caused it,
a loop that keeps turning writes nothing, and the server runs it only when its file is set."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from command_center.stall_trace import StallTracer, describe, read
from config.settings import ServerSettings
from tests.conftest import AppFactory


def _serialise_everything_at_once() -> None:
    time.sleep(0.3)  # what a big batch handled in one go does to every task on the loop


async def test_a_stall_is_written_with_the_stack_that_held_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "stalls.jsonl"
    async with StallTracer(path, threshold_ms=50):
        await asyncio.sleep(0.05)
        _serialise_everything_at_once()
        await asyncio.sleep(0.05)
    stalls = list(read(path))
    assert len(stalls) == 1, stalls
    stall = stalls[0]
    assert stall["stall_ms"] >= 200, stall  # type: ignore[operator]
    assert stall["samples"] >= 1, stall  # type: ignore[operator]
    top = stall["stacks"][0][1]  # type: ignore[index]
    assert top.startswith("tests/test_stall_trace.py:"), top
    assert "_serialise_everything_at_once <- " in top and "test_a_stall_is_written" in top, top


def _busy(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_a_stall_says_whether_the_loop_ran_or_waited(tmp_path: Path) -> None:
    """Samples are taken only where the loop thread lets go of the GIL, so they cannot say where a stall's time
    went: the kernel's accounting does. A stall of computing shows as the loop's CPU; one spent blocked (here a
    sleep: as waiting for the GIL or a blocking call would) does not."""
    path = tmp_path / "stalls.jsonl"
    async with StallTracer(path, threshold_ms=50):
        await asyncio.sleep(0.05)
        _busy(0.3)
        await asyncio.sleep(0.05)
        _serialise_everything_at_once()
        await asyncio.sleep(0.05)
    busy, blocked = list(read(path))
    assert busy["loop_cpu_ms"] >= 250, busy  # type: ignore[operator]
    assert blocked["loop_cpu_ms"] < 100 <= blocked["stall_ms"], blocked  # type: ignore[operator]
    for stall in (busy, blocked):
        assert stall["loop_waited_ms"] >= 0 and stall["others_cpu_ms"] >= 0, stall  # type: ignore[operator]


async def test_a_loop_that_keeps_turning_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "stalls.jsonl"
    async with StallTracer(path, threshold_ms=50):
        for _ in range(30):
            time.sleep(0.005)  # noqa: ASYNC251 - short steps, each well under the threshold
            await asyncio.sleep(0)
    assert list(read(path)) == []


def test_a_stack_reads_innermost_first_with_paths_relative_to_the_project() -> None:
    import sys

    line = describe(sys._getframe())
    assert line.split(" <- ")[0].startswith("tests/test_stall_trace.py:")
    assert line.split(" <- ")[0].endswith(" test_a_stack_reads_innermost_first_with_paths_relative_to_the_project")


async def test_the_server_traces_stalls_only_when_its_file_is_set(make_world: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "server-stalls.jsonl"
    assert ServerSettings().stall_trace_file is None
    world = await make_world(server=ServerSettings(stall_trace_file=path, stall_trace_ms=50))
    assert (await world.client.get("/api/health")).status == 200
    _serialise_everything_at_once()
    await asyncio.sleep(0.1)
    stalls = list(read(path))
    assert stalls and any("_serialise_everything_at_once" in s[1] for st in stalls for s in st["stacks"]), stalls  # type: ignore[attr-defined]
