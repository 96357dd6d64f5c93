"""Faults, for real: a Redis of the test's own is killed (-9) and started again empty while a unit reports and
a screen watches. Telemetry is still stored and acknowledged meanwhile, health says degraded, and the screen
recovers within seconds without the app restarting: the bus sees its sequence counters start again and the
screen's feed resnapshots."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import free_port
from bench.own_services import OwnPostgres, OwnRedis
from config.settings import BusSettings, StoreSettings, TrackingSettings
from core.ids import UnitId
from persistence.factory import build_store
from tests.conftest import AppFactory
from tests.test_live_tracking import UNIT, fix, open_screen, open_unit, send


async def test_screens_recover_when_redis_restarts_empty(make_world: AppFactory, tmp_path: Path) -> None:
    redis = OwnRedis(tmp_path)
    try:
        await redis.start()
        world = await make_world(bus=BusSettings(url=redis.url))
        screen = await open_screen(world)
        unit = await open_unit(world)
        for seq in range(1, 6):  # a few frames, so the bus's sequence for the court is well above 1
            await send(unit, fix(seq, lat=45.75 + seq / 10_000))
            await screen.unit_update(UNIT, lambda v, s=seq: v["position"]["seq"] == s)

        redis.kill()  # -9: no goodbye, no data kept
        during = await send(unit, fix(6, lat=45.7507))
        assert during["stored"] == [6]  # telemetry does not need the bus: stored and acknowledged
        health = await world.client.get("/api/health")
        assert (await health.json())["status"] == "degraded"
        streaming = await world.client.get("/api/media/streaming", headers=world.auth("operator"))
        assert streaming.status == 200  # which process holds which stream is unknown: this one's are listed
        watch = await world.client.post(f"/api/whep/{UNIT}", data="v=0\r\n", headers={**world.auth("operator"),
                                        "Content-Type": "application/sdp"})  # fmt: skip
        assert watch.status == 409  # "not streaming" (here), not a 500 for the failed lease lookup

        await redis.start()  # back, empty: every sequence counter starts again at 1
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


@pytest.mark.skipif(not OwnPostgres.available, reason="needs root and PostgreSQL")
async def test_ingest_waits_out_a_postgres_crash_and_bounds_what_it_holds(make_world: AppFactory) -> None:
    postgres = OwnPostgres()
    try:
        await postgres.init()
        await postgres.start()
        store = StoreSettings(url=postgres.url)
        world = await make_world(store=store, tracking=TrackingSettings(max_pending_positions=100))
        unit = await open_unit(world)
        assert (await send(unit, fix(1)))["stored"] == [1]
        second = await world.client.post("/api/units", headers=world.auth("admin"), json={
            "id": "HLJ0102-U02", "name": "道里二号", "kind": "handheld", "court_id": "HLJ0102"})  # fmt: skip
        other = await world.client.ws_connect(
            "/api/telemetry/ws", headers={"Authorization": f"Bearer {(await second.json())['secret']}"}
        )

        await postgres.crash()  # the database dies, no goodbye
        waiting = asyncio.create_task(send(unit, fix(2, lat=45.751)))  # held: answered once it is durable
        await asyncio.sleep(1.0)
        assert not waiting.done()
        health = await world.client.get("/api/health")
        assert health.status == 503 and (await health.json())["status"] == "degraded"
        backlog = [fix(seq) for seq in range(100, 250)]  # more than the 100 it may hold
        refused = await send(other, backlog)  # a unit whose socket is open: refused at once, not held
        assert refused["type"] == "error" and refused["code"] == "unavailable"
        assert "waiting for the database" in refused["message"] and "nothing was stored" in refused["message"]
        upload = await world.client.post("/api/telemetry/batch", json={"positions": backlog[:5]},
                                         headers=world.auth("device"))  # fmt: skip
        assert upload.status == 503  # a new request cannot even check its credential: 503, not 500

        await postgres.start()  # back, after crash recovery
        answer = await asyncio.wait_for(waiting, 20)
        assert answer["stored"] == [2]
        assert (await send(unit, fix(3)))["stored"] == [3]
        assert await world.store.count_positions(UNIT) == 3  # each once
        assert await world.store.count_positions(UnitId("HLJ0102-U02")) == 0  # the refused batch stays with its unit
        assert (await world.client.get("/api/health")).status == 200
        await other.close()
    finally:
        await postgres.remove()


async def test_a_server_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """kill -9 the server process while a unit streams; the unit keeps recording, reconnects when a server
    answers again (here the same address restarted; behind a proxy, another process) and delivers its backlog:
    every position stored exactly once."""
    from bench.harness import Server
    from field_device.client import TelemetryClient
    from tests.test_field_client import fix_now

    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env |= {"CC_DATA_DIR": str(tmp_path), "CC_STORE__URL": f"sqlite:///{tmp_path / 'app.db'}", "CC_CONFIG": "",
            "CC_AUTH__ARGON2_MEMORY_KIB": "8", "CC_AUTH__ARGON2_TIME_COST": "1",
            "CC_AUTH__ARGON2_PARALLELISM": "1"}  # fmt: skip
    cli = [sys.executable, "-m", "command_center"]
    await asyncio.to_thread(subprocess.run, [*cli, "init"], env=env, check=True, capture_output=True)
    added = await asyncio.to_thread(subprocess.run, [*cli, "device", "add", "--id", "HLJ0102-K1", "--name", "k",
                                    "--kind", "handheld", "--court", "HLJ0102"], env=env, check=True,
                                    capture_output=True, text=True)  # fmt: skip
    secret = added.stdout.rsplit(" ", 1)[-1].strip()
    port = free_port()
    server = Server(env, port=port, core=None)
    server.start(tmp_path / "server-1.log")
    client = TelemetryClient(f"http://127.0.0.1:{port}", secret, label="HLJ0102-K1", backoff=(0.1, 0.5))
    try:
        await server.wait_healthy()
        await client.start()
        for n in range(20):
            client.record(fix_now(lat=45.75 + n / 10_000))
            await asyncio.sleep(0.02)
        assert server.process is not None
        server.process.kill()  # -9
        server.process.wait()
        for n in range(20, 60):  # the unit keeps recording while no server answers
            client.record(fix_now(lat=45.75 + n / 10_000))
            await asyncio.sleep(0.01)
        server.start(tmp_path / "server-2.log")
        await server.wait_healthy()
        await asyncio.wait_for(client.drained(), 30)
    finally:
        await client.close()
        server.stop()
    store = build_store(StoreSettings(url=f"sqlite:///{tmp_path / 'app.db'}"))
    await store.open()
    try:
        assert await store.count_positions(UnitId("HLJ0102-K1")) == 60  # none lost, none twice
    finally:
        await store.close()
