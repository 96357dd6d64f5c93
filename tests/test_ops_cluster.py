"""Two real server processes on one PostgreSQL and one Redis, seen from the 运维 side: each lists both
processes with the leader marked, a killed one is shown stale once its record is older than the TTL, and
the media request rate holds across both (a caller cannot get the limit once per process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.cluster import Cluster
from bench.harness import fresh_store_url
from field_device.media_unit import MediaUnit
from tests.conftest import REDIS_URL
from tests.media_support import loopback

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "ops-cluster-supervisor"
UNIT = "HLJ0102-O1"
STREAMING = "HLJ0102-O2"  # streams to node-1 while a viewer's requests reach node-2
__all__ = ["loopback"]  # the fixture
TTL = 1.5  # seconds: a record older than this is stale (short, so the test waits little)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("ops-cluster")
    store_url = asyncio.run(fresh_store_url("postgres", workdir, "cc_ops_cluster_test"))
    settings = {"CC_CLUSTER__HEARTBEAT_SECONDS": "0.2", "CC_CLUSTER__PROCESS_TTL_SECONDS": str(TTL),
                "CC_MEDIA__REQUESTS_PER_MINUTE": "3"}  # fmt: skip
    cluster = Cluster(workdir, processes=2, store_url=store_url, redis_url=REDIS_URL, env=settings)
    cluster.init()
    cluster.add_user("sup1", "supervisor", PASSWORD, court="HLJ")  # the 运维 overview: every court
    cluster.secrets = {unit: cluster.add_device(unit) for unit in (UNIT, STREAMING)}  # type: ignore[attr-defined]
    try:
        asyncio.run(cluster.start(proxy=False))
        yield cluster
    finally:
        cluster.stop()


async def _login(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.post(f"{base}/api/auth/login", json={"username": "sup1", "password": PASSWORD}) as answer:
        assert answer.status == 200, await answer.text()
        return {"Authorization": f"Bearer {(await answer.json())['token']}"}


async def _overview(http: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> dict[str, Any]:
    async with http.get(f"{base}/api/ops/overview", headers=auth) as answer:
        assert answer.status == 200, await answer.text()
        return dict(await answer.json())


async def test_the_media_request_rate_holds_across_both_processes(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    device = {"Authorization": f"Bearer {cluster.secrets[UNIT]}",  # type: ignore[attr-defined]
              "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        statuses = []
        for base in (a, b, a):  # three of the three a minute allowed, spread over both processes
            async with http.patch(f"{base}/api/whip/none", data="a=end-of-candidates", headers=device) as answer:
                statuses.append(answer.status)
        assert statuses == [404, 404, 404]  # counted, then answered: no such session
        for base in (b, a):  # the fourth is refused by either, though neither saw three itself
            async with http.delete(f"{base}/api/whip/none", headers=device) as answer:
                assert answer.status == 429, await answer.text()
                assert (await answer.json())["error"]["code"] == "too_many_requests"
                assert 1 <= int(answer.headers["Retry-After"]) <= 60


async def test_a_forwarded_request_is_counted_once(cluster: Cluster, loopback: None) -> None:
    """A viewer's request reaching the process that does not hold the unit's session is sent on to the one that
    does (command_center/forwarding.py), and counted there only: three a minute means three, not one and a half."""
    a, b = (s.url for s in cluster.servers)
    unit = MediaUnit(a, cluster.secrets[STREAMING], talkback=False, label="O2")  # type: ignore[attr-defined]
    await unit.start()
    try:
        async with aiohttp.ClientSession() as http:
            auth = await _login(http, b)
            for _ in range(100):  # node-2 learns that node-1 holds the unit's session (its media lease)
                async with http.get(f"{b}/api/media/streaming", headers=auth) as answer:
                    streaming = (await answer.json())["unit_ids"]
                if STREAMING in streaming:
                    break
                await asyncio.sleep(0.2)
            assert STREAMING in streaming
            statuses = []
            for _ in range(4):
                async with http.delete(f"{b}/api/whep/{STREAMING}/no-such-view", headers=auth) as answer:
                    statuses.append(answer.status)
                    retry_after = answer.headers.get("Retry-After")
            assert statuses == [404, 404, 404, 429], statuses  # node-1 answered each: no such view of the unit
            assert retry_after is not None and 1 <= int(retry_after) <= 60
        # node-1 handled them (its access log keeps refusals): the three 404s and the 429, each once
        for _ in range(50):  # a request's access-log line is written once its answer has gone
            log = (cluster.workdir / "node-1.log").read_text(errors="replace").splitlines()
            handled = [line for line in log if f"/api/whep/{STREAMING}/no-such-view" in line]
            if len(handled) >= 4:
                break
            await asyncio.sleep(0.1)
        assert len(handled) == 4, handled
    finally:
        await unit.close()


async def test_each_process_lists_both_with_the_leader_and_a_killed_one_goes_stale(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    async with aiohttp.ClientSession() as http:
        auth = {base: await _login(http, base) for base in (a, b)}
        for _ in range(100):  # leadership is taken within a lease period, and shown at the next heartbeat
            views = [await _overview(http, base, auth[base]) for base in (a, b)]
            if all(view["node"]["leader_node"] and any(p["leader"] for p in view["processes"]) for view in views):
                break
            await asyncio.sleep(0.2)
        leader = views[0]["node"]["leader_node"]
        assert leader in ("node-1", "node-2")
        for view in views:
            listed = {p["id"]: p for p in view["processes"]}
            assert set(listed) == {"node-1", "node-2"}, view["processes"]
            assert {p["state"] for p in listed.values()} == {"live"}
            assert [p["id"] for p in listed.values() if p["leader"]] == [leader]
            assert listed[leader]["roles"]["leader"] == 1
            assert {p["pid"] for p in listed.values()} == {s.pid for s in cluster.servers}
            assert all(p["url"].startswith("http://127.0.0.1:") for p in listed.values())

        cluster.kill(0)  # -9: node-1 says no goodbye, its record stays behind
        for _ in range(100):
            listed = {p["id"]: p for p in (await _overview(http, b, auth[b]))["processes"]}
            if listed["node-1"]["state"] == "stale":
                break
            await asyncio.sleep(0.1)
        assert listed["node-1"]["state"] == "stale" and listed["node-1"]["age_seconds"] > TTL
        assert listed["node-2"]["state"] == "live"
        for _ in range(100):  # the survivor takes the lead once node-1's lease lapses
            listed = {p["id"]: p for p in (await _overview(http, b, auth[b]))["processes"]}
            if listed["node-2"]["leader"]:
                break
            await asyncio.sleep(0.1)
        assert listed["node-2"]["leader"] is True


def test_a_process_stopped_cleanly_removes_its_record(tmp_path: Path) -> None:
    """A clean stop (SIGTERM) leaves no stale record behind: only killed or cut-off processes are shown stale."""
    store_url = asyncio.run(fresh_store_url("postgres", tmp_path, "cc_ops_cluster_stop_test"))
    beats = {"CC_CLUSTER__HEARTBEAT_SECONDS": "0.2", "CC_CLUSTER__PROCESS_TTL_SECONDS": str(TTL)}
    pair = Cluster(tmp_path, processes=2, store_url=store_url, redis_url=REDIS_URL, env=beats)
    pair.init()
    pair.add_user("sup1", "supervisor", PASSWORD, court="HLJ")

    async def check() -> None:
        await pair.start(proxy=False)
        survivor = pair.servers[1].url
        async with aiohttp.ClientSession() as http:
            auth = await _login(http, survivor)
            assert len((await _overview(http, survivor, auth))["processes"]) == 2
            await asyncio.to_thread(pair.servers[0].stop)
            listed = [p["id"] for p in (await _overview(http, survivor, auth))["processes"]]
            assert listed == ["node-2"]

    try:
        asyncio.run(check())
    finally:
        pair.stop()
