"""The event-loop lag probe benchmarks read (command_center/loop_lag.py): off by default, and when on it
reports a stall of the loop at its length."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import orjson

from command_center.loop_lag import sample_forever
from config.settings import ServerSettings
from tests.conftest import AppFactory


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_a_blocked_loop_shows_as_lag_of_at_least_the_block(tmp_path: Path) -> None:
    path = tmp_path / "lag.jsonl"
    probe = asyncio.create_task(sample_forever(path))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - on purpose: what a collector pass or a big synchronous batch does to every task on the loop
    await asyncio.sleep(0.05)
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    lags = [lag for line in _lines(path) for lag in line["lag_ms"]]  # type: ignore[attr-defined]
    assert max(lags) >= 250, lags
    assert all(isinstance(line["at"], float) for line in _lines(path))


async def test_the_server_runs_the_probe_only_when_its_file_is_set(make_world: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "server-lag.jsonl"
    world = await make_world(server=ServerSettings(loop_lag_file=path))
    await asyncio.sleep(1.2)  # one line a second
    assert (await world.client.get("/api/health")).status == 200
    assert _lines(path) and all(line["lag_ms"] for line in _lines(path))
    assert ServerSettings().loop_lag_file is None


async def test_a_collector_pass_over_many_objects_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "lag.jsonl"
    probe = asyncio.create_task(sample_forever(path))
    await asyncio.sleep(0.02)
    garbage = [[i] for i in range(300_000)]  # enough objects for a full pass to take milliseconds
    gc.collect()
    del garbage
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    pauses = [pause for line in _lines(path) for pause in line["gc_ms"]]  # type: ignore[attr-defined]
    assert any(generation == 2 and ms >= 1 for generation, ms in pauses), pauses
