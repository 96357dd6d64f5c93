"""Fault drill: the scaled layout under real failures, one after another, with what each cost.

    python -m bench.fault_drill                 # 20 units at 2 Hz through nginx, one screen
    python -m bench.fault_drill --units 50

Runs a PostgreSQL and a Redis of its own (killed with -9 here; the machine's own servers are not touched;
needs root for PostgreSQL), two server processes behind nginx, the field client for every unit (it keeps
each position until the server acknowledges it as stored) and one screen that reconnects and resumes as a
wall display does. Then, in turn: a server process killed and restarted, Redis killed and restarted empty,
PostgreSQL killed and restarted (crash recovery). For each it prints what health said meanwhile, how long
after the repair every unit's backlog was stored, and how long until the screen showed fresh positions; at
the end, positions recorded by the units against those stored (lost, and stored twice).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.cluster import Cluster
from bench.own_services import OwnPostgres, OwnRedis
from field_device.client import TelemetryClient

PASSWORD = "fault drill operator"


class Screen:
    """A wall display through nginx: reconnects and resumes; remembers when it last saw a fresh position."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.fresh_at = 0.0  # monotonic time of the last frame carrying a position recorded after ``since``
        self.since_ms = 0
        self.reconnects = self.snapshots = 0
        self._seq: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.ws_connect(
                        f"{self.url}/api/screen/ws", headers={"Authorization": f"Bearer {self.token}"}, heartbeat=5
                    ) as ws:
                        await ws.send_json({"type": "subscribe", "topics": ["units"], "resume": self._seq})
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            self._see(message.json())
                self.reconnects += 1
                await asyncio.sleep(0.5)

    def _see(self, data: dict[str, Any]) -> None:
        if data.get("type") not in ("frame", "snapshot"):
            return
        self._seq[data["topic"]] = data["seq"]
        self.snapshots += data["type"] == "snapshot"
        for view in data.get("units", []):
            position = view.get("position")
            if position and position["fix_time_ms"] > self.since_ms:
                self.fresh_at = time.monotonic()


async def health(url: str) -> str:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/api/health", timeout=aiohttp.ClientTimeout(2)) as r,
        ):
            return f"{r.status} {(await r.json()).get('status')}"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return type(exc).__name__


async def watch_health(url: str, seen: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        state = await health(url)
        if not seen or seen[-1] != state:
            seen.append(state)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def drill(name: str, cluster: Cluster, clients: list[TelemetryClient], screen: Screen,
                fault: Any, repair: Any, down_s: float) -> None:  # fmt: skip
    seen: list[str] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_health(cluster.url, seen, stop))
    reconnects = screen.reconnects
    await fault()
    faulted = time.monotonic()
    await asyncio.sleep(1.0)  # the fault has bitten: from here, until every unit's backlog is stored again
    caught_up = asyncio.create_task(_caught_up(clients))
    await asyncio.sleep(down_s - 1.0)
    await repair()
    repaired = time.monotonic()
    screen.since_ms = int(time.time() * 1000)
    stored = await caught_up - faulted
    for _ in range(600):
        if screen.fresh_at > repaired:
            break
        await asyncio.sleep(0.1)
    fresh = screen.fresh_at - repaired if screen.fresh_at > repaired else float("nan")
    await asyncio.sleep(1.0)
    stop.set()
    await watcher
    within = f"{'<=' if stored < 1.05 else ''}{stored:.1f}"  # measured from 1 s after the fault on
    print(f"{name:<33} down {down_s:>3.0f} s | health: {' -> '.join(seen):<32} | units' backlog stored "
          f"{within:>6} s after the fault | screen: fresh {fresh:>4.1f} s after the repair, "
          f"{screen.reconnects - reconnects} reconnects")  # fmt: skip


async def _caught_up(clients: list[TelemetryClient]) -> float:
    """When every unit's outbox was empty (all it recorded stored), on the monotonic clock."""
    await asyncio.wait_for(asyncio.gather(*(c.drained() for c in clients)), 180)
    return time.monotonic()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--rate", type=float, default=2.0, help="positions per second per unit")
    args = parser.parse_args()
    if not OwnPostgres.available:
        raise SystemExit("the drill runs a PostgreSQL of its own: it needs root and the PostgreSQL server binaries")
    postgres = OwnPostgres()
    with tempfile.TemporaryDirectory(prefix="cc-drill-") as tmp:
        workdir = Path(tmp)
        redis = OwnRedis(workdir)
        await postgres.init()
        await postgres.start()
        await redis.start()
        cluster = Cluster(workdir / "cluster", processes=2, store_url=postgres.url, redis_url=redis.url)
        (workdir / "cluster").mkdir()
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.add_user, "drill", "operator", PASSWORD)
        units = [f"HLJ0102-D{n:03d}" for n in range(args.units)]
        secrets = [await asyncio.to_thread(cluster.add_device, unit) for unit in units]
        await cluster.start()
        clients = [
            TelemetryClient(cluster.url, s, label=u, backoff=(0.2, 2.0)) for u, s in zip(units, secrets, strict=True)
        ]
        recorded = dict.fromkeys(units, 0)
        screen = None
        recorder = None
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{cluster.url}/api/auth/login", json={"username": "drill", "password": PASSWORD}) as answer,
            ):
                token = (await answer.json())["token"]
            screen = Screen(cluster.url, token)
            screen.start()
            for client in clients:
                await client.start()

            async def record_forever() -> None:
                n = 0
                while True:
                    for unit, client in zip(units, clients, strict=True):
                        if client.record({"fix_time_ms": int(time.time() * 1000), "lat": 45.75 + n / 100_000,
                                          "lon": 126.64, "speed_mps": 1.0}) is not None:  # fmt: skip
                            recorded[unit] += 1
                    n += 1
                    await asyncio.sleep(1 / args.rate)

            recorder = asyncio.create_task(record_forever())
            await asyncio.sleep(5)
            print(f"fault drill: {args.units} units at {args.rate:g} Hz through nginx, 2 server processes, "
                  "PostgreSQL and Redis of the drill's own\n")  # fmt: skip

            def kill_server(index: int) -> Any:
                async def kill() -> None:
                    cluster.kill(index)

                return kill

            def restart_server(index: int) -> Any:
                async def restart() -> None:
                    cluster.servers[index].start(cluster.workdir / f"node-{index + 1}-restarted.log")
                    await cluster.servers[index].wait_healthy(60)

                return restart

            async def kill_redis() -> None:
                redis.kill()

            for index in range(2):  # each in turn: one of them holds the screen
                await drill(f"server process node-{index + 1} killed (-9)", cluster, clients, screen,
                            kill_server(index), restart_server(index), 5)  # fmt: skip
            await drill("Redis killed (-9), back empty", cluster, clients, screen, kill_redis, redis.start, 5)
            await drill("PostgreSQL killed (-9), recovers", cluster, clients, screen, postgres.crash, postgres.start,
                        10)  # fmt: skip
        finally:
            if recorder is not None:
                recorder.cancel()
            for client in clients:
                await asyncio.wait_for(client.drained(), 60)
                await client.close()
            if screen is not None:
                await screen.close()
            cluster.stop()
        conn = await asyncpg.connect(postgres.url)
        try:
            rows = await conn.fetch("SELECT unit_id, count(*) AS n, count(DISTINCT seq) AS distinct_seqs "
                                    "FROM positions GROUP BY unit_id")  # fmt: skip
        finally:
            await conn.close()
        stored = {r["unit_id"]: r["n"] for r in rows}
        twice = sum(r["n"] - r["distinct_seqs"] for r in rows)
        lost = sum(max(0, recorded[u] - stored.get(u, 0)) for u in units)
        print(f"\npositions recorded by the units {sum(recorded.values())}, stored {sum(stored.values())}, "
              f"lost {lost}, stored twice {twice}; the screen reconnected {screen.reconnects if screen else 0} times "
              f"and took {screen.snapshots if screen else 0} snapshots")  # fmt: skip
        redis.kill()
        await postgres.remove()


if __name__ == "__main__":
    asyncio.run(main())
