"""Faults, for real: a Redis of the test's own is killed (-9) and started again empty while a unit reports and
a screen watches. Telemetry is still stored and acknowledged meanwhile, health says degraded, and the screen
recovers within seconds without the app restarting: the bus sees its sequence counters start again and the
screen's feed resnapshots."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from bench.harness import free_port
from config.settings import BusSettings
from tests.conftest import AppFactory
from tests.test_live_tracking import UNIT, fix, open_screen, open_unit, send


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    log = (folder / "redis.log").open("ab")
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=log, stderr=log)  # fmt: skip


async def _until_ready(port: int, folder: Path) -> None:
    """Until this Redis answers PING (its log is in the failure message otherwise)."""
    try:
        await asyncio.wait_for(_ping_until_pong(port), 10)
    except TimeoutError:
        raise AssertionError(f"redis on {port} did not start: {(folder / 'redis.log').read_text()[-1000:]}") from None


async def _ping_until_pong(port: int) -> None:
    while True:
        probe = await asyncio.create_subprocess_exec("redis-cli", "-p", str(port), "ping",
                                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        out, _ = await probe.communicate()
        if out.strip() == b"PONG":
            return
        await asyncio.sleep(0.1)


async def test_screens_recover_when_redis_restarts_empty(make_world: AppFactory, tmp_path: Path) -> None:
    port = free_port()
    redis = _redis(port, tmp_path)
    try:
        await _until_ready(port, tmp_path)
        world = await make_world(bus=BusSettings(url=f"redis://127.0.0.1:{port}/0"))
        screen = await open_screen(world)
        unit = await open_unit(world)
        for seq in range(1, 6):  # a few frames, so the bus's sequence for the court is well above 1
            await send(unit, fix(seq, lat=45.75 + seq / 10_000))
            await screen.unit_update(UNIT, lambda v, s=seq: v["position"]["seq"] == s)

        redis.kill()  # -9: no goodbye, no data kept
        redis.wait()
        during = await send(unit, fix(6, lat=45.7507))
        assert during["stored"] == [6]  # telemetry does not need the bus: stored and acknowledged
        health = await world.client.get("/api/health")
        assert (await health.json())["status"] == "degraded"

        redis = _redis(port, tmp_path)  # back, empty: every sequence counter starts again at 1
        await _until_ready(port, tmp_path)
        await send(unit, fix(7, lat=45.76))
        async with asyncio.timeout(20):  # the screen catches up without the app restarting
            while True:
                message = await screen.next("snapshot", within=20, topic="units.HLJ0102")
                views = {v["unit_id"]: v for v in message["units"]}
                if views[UNIT]["position"] and views[UNIT]["position"]["seq"] >= 6:
                    break
        await send(unit, fix(8, lat=45.761))  # and keeps following afterwards
        await screen.unit_update(UNIT, lambda v: v["position"]["seq"] == 8, within=10)
        assert (await (await world.client.get("/api/health")).json())["status"] == "ok"
    finally:
        redis.kill()
        redis.wait()
