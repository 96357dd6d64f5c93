"""Nothing runs twice: a lease holder paused past its lease is fenced out by the store.

Fast part: the epochs the coordinators grant (real Redis, and the single-process one), and the store's fence
on both adapters (a stale epoch refused beside a good write, a newer one accepted). Process part: two real
server processes on PostgreSQL and Redis and the agency simulator as its own process; the one running a query
and a follow-up is stopped (SIGSTOP) past its lease, the other takes both over and finishes them, and the
first is let go again (SIGCONT): every agency is asked once and the freeze is sent once, counted at the
simulator.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bench.cluster import NGINX, Cluster
from bench.harness import free_port, fresh_store_url
from cluster.local import LocalCoordinator
from cluster.port import fence_of
from cluster.redis import RedisCoordinator
from core.errors import FencedOut
from core.fencing import Fence, admitted, newest_per_lease, next_epoch
from core.ids import AgencyId, FollowUpId, JobId, QueryId
from persistence.port import Store
from persistence.query_models import (
    AssetDraft,
    FollowUp,
    FollowUpAction,
    FollowUpStatus,
    JobOutcome,
    JobStatus,
    Query,
    submit_audit,
)
from tests.conftest import REDIS_URL
from tests.query_support import simulator_process
from tests.test_query_store import _case, _job

# pure ---------------------------------------------------------------------------------------------------


def test_epochs_rise_past_the_counter_and_the_clock() -> None:
    assert next_epoch(0, 1_000) == 1_000  # a lost counter restarts from the clock
    assert next_epoch(5_000, 1_000) == 5_001  # a burst of grants runs ahead of the clock, still rising
    assert newest_per_lease([Fence("q", 3), None, Fence("p", 1), Fence("q", 7), Fence("q", 5)]) == {"p": 1, "q": 7}
    held = {"q": 7}
    assert admitted(None, held) and admitted(Fence("q", 7), held)
    assert not admitted(Fence("q", 5), held) and not admitted(Fence("p", 1), held)


# coordinators -------------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_each_redis_grant_has_a_higher_epoch_kept_through_renewals(redis_namespace: str) -> None:
    one = RedisCoordinator(REDIS_URL, node_id="n1", node_url="http://n1", lease_seconds=60, namespace=redis_namespace)
    two = RedisCoordinator(REDIS_URL, node_id="n2", node_url="http://n2", lease_seconds=60, namespace=redis_namespace)
    await one.start()
    await two.start()
    try:
        assert one.epoch("query:a") is None and fence_of(one, "query:a") is None
        assert await one.claim("query:a")
        first = one.epoch("query:a")
        assert first is not None
        assert await one.claim("query:a") and one.epoch("query:a") == first  # a renewal: the same grant
        assert not await two.claim("query:a") and two.epoch("query:a") is None
        await one.release("query:a")
        assert one.epoch("query:a") is None
        assert await two.claim("query:a")
        second = two.epoch("query:a")
        assert second is not None and second > first
        await two.take("query:a")  # a forced take is a new grant too
        third = two.epoch("query:a")
        assert third is not None and third > second
        assert fence_of(two, "query:a") == Fence("query:a", third)
        # Redis loses its data (restarted empty): the counter is reseeded from Redis's clock, still higher
        client = aioredis.from_url(REDIS_URL)
        try:
            await client.delete(*[key async for key in client.scan_iter(match=f"{redis_namespace}:*")])
        finally:
            await client.aclose()
        assert await one.claim("query:a")
        fourth = one.epoch("query:a")
        assert fourth is not None and fourth > third
    finally:
        await one.close()
        await two.close()


async def test_local_grants_rise_across_a_restart() -> None:
    before = LocalCoordinator("n1", "http://n1")
    await before.claim("query:a")
    first = before.epoch("query:a")
    assert first is not None and await before.claim("query:a") and before.epoch("query:a") == first
    await before.take("query:a")
    second = before.epoch("query:a")
    assert second is not None and second > first
    await before.close()
    after = LocalCoordinator("n1", "http://n1")  # the process restarted on the same database
    await after.claim("query:a")
    third = after.epoch("query:a")
    assert third is not None and third > second


# the store's fence ------------------------------------------------------------------------------------------


async def test_the_store_refuses_a_stale_epoch_and_accepts_a_newer_one(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    for q in ("q1", "q2"):
        jobs = [_job(q, f"{q}-j{i}", party, f"bank-{i}") for i in range(3)]
        query = Query(QueryId(q), case_id, judge, "查控", 1, 30_001)
        await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    old, new = Fence("query:q1", 100), Fence("query:q1", 200)
    other = Fence("query:q2", 50)

    # the first holder claims a job, then a newer grant writes: the first is refused from then on
    assert await store.start_job_attempts([JobId("q1-j0")], 5, fences=[old]) == {"q1-j0": 1}
    assert await store.start_job_attempts([JobId("q1-j0")], 6, fences=[new]) == {"q1-j0": 2}
    # a batch mixing queries: the stale claim is refused, the good one beside it is made
    counts = await store.start_job_attempts([JobId("q1-j1"), JobId("q2-j0")], 7, fences=[old, other])
    refused = counts[JobId("q1-j1")]
    assert isinstance(refused, FencedOut) and refused.code == "fenced_out" and refused.status == 409
    assert counts[JobId("q2-j0")] == 1
    attempts = {j.id: j.attempts for j in await store.query_jobs(QueryId("q1"))}
    assert attempts == {"q1-j0": 2, "q1-j1": 0, "q1-j2": 0}  # the refused claim counted nothing
    # an older epoch within one batch is as stale as one the store has seen
    mixed = await store.start_job_attempts([JobId("q1-j1"), JobId("q1-j2")], 8, fences=[Fence("query:q1", 300), new])
    assert mixed[JobId("q1-j1")] == 1 and isinstance(mixed[JobId("q1-j2")], FencedOut)
    newest = Fence("query:q1", 300)

    # recording answers: the stale one is refused (the job stays pending), a good one beside it is kept
    deposit = AssetDraft("deposit", "6222-0001", "活期存款", 12_345, {"bank": "工行"})
    stale, good = await store.finish_jobs(
        [
            JobOutcome(JobId("q1-j0"), JobStatus.ANSWERED, 9, assets=[deposit], fence=new),
            JobOutcome(JobId("q2-j0"), JobStatus.NO_ASSETS, 9, fence=other),
        ]
    )
    assert isinstance(stale, FencedOut) and isinstance(good, tuple) and good[0].status is JobStatus.NO_ASSETS
    assert (await store.query_jobs(QueryId("q1")))[0].status is JobStatus.PENDING
    assert await store.query_assets(QueryId("q1")) == []
    [done] = await store.finish_jobs(
        [JobOutcome(JobId("q1-j0"), JobStatus.ANSWERED, 10, assets=[deposit], fence=newest)]
    )
    assert isinstance(done, tuple) and done[0].status is JobStatus.ANSWERED and len(done[1]) == 1
    # writes made without a lease (one process, or Redis away) are not fenced
    [unfenced] = await store.finish_jobs([JobOutcome(JobId("q1-j2"), JobStatus.NO_ASSETS, 11)])
    assert isinstance(unfenced, tuple)

    # completing the query: the stale holder changes nothing
    with pytest.raises(FencedOut):
        await store.complete_query(QueryId("q1"), 30_001, fence=new)
    assert (await store.get_query(QueryId("q1"))).completed_ms is None
    assert [j.id for j in await store.complete_query(QueryId("q1"), 30_001, fence=newest)] == ["q1-j1"]

    # a follow-up's send and settlement under its own lease
    asset = (await store.query_assets(QueryId("q1")))[0]
    followup = FollowUp(FollowUpId("f1"), asset.id, QueryId("q1"), case_id, AgencyId("bank-0"), FollowUpAction.FREEZE,
                        100, "冻结", judge, 10, FollowUpStatus.APPROVED)  # fmt: skip
    await store.add_followup(followup)
    sending = await store.update_followup(
        FollowUpId("f1"), expect=[FollowUpStatus.APPROVED], status=FollowUpStatus.SENDING, at_ms=11,
        count_attempt=True, fence=Fence("followup:f1", 10),
    )  # fmt: skip
    assert sending is not None and sending.attempts == 1
    taken = await store.update_followup(
        FollowUpId("f1"), expect=[FollowUpStatus.SENDING], status=FollowUpStatus.SENDING, at_ms=12,
        count_attempt=True, fence=Fence("followup:f1", 11),
    )  # fmt: skip
    assert taken is not None and taken.attempts == 2
    with pytest.raises(FencedOut, match="followup:f1"):
        await store.update_followup(
            FollowUpId("f1"), expect=[FollowUpStatus.SENDING], status=FollowUpStatus.SENDING, at_ms=13,
            count_attempt=True, fence=Fence("followup:f1", 10),
        )  # fmt: skip
    with pytest.raises(FencedOut):
        await store.update_followup(
            FollowUpId("f1"), expect=[FollowUpStatus.SENDING], status=FollowUpStatus.CONFIRMED, at_ms=13,
            agency_ref="stale", fence=Fence("followup:f1", 10),
        )  # fmt: skip
    unchanged = await store.get_followup(FollowUpId("f1"))
    assert unchanged.status is FollowUpStatus.SENDING and unchanged.attempts == 2 and unchanged.agency_ref is None
    confirmed = await store.update_followup(
        FollowUpId("f1"), expect=[FollowUpStatus.SENDING], status=FollowUpStatus.CONFIRMED, at_ms=14,
        agency_ref="BANK-1", fence=Fence("followup:f1", 11),
    )  # fmt: skip
    assert confirmed is not None and confirmed.agency_ref == "BANK-1"


# two real processes ---------------------------------------------------------------------------------------

PASSWORD = "fencing-test-password"
PERSON = "11010519491231002X"  # the simulator's bank holds one account of this person
BANK_LATENCY_MS = 10_000  # once the first process is stopped: the window in which a stale holder would ask again


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fencing")


@pytest.fixture(scope="module")
def bank(workdir: Path) -> Iterator[tuple[Path, str]]:
    """One bank as a simulator process of its own (the agencies file, and the simulator's address). Retries
    are many and slow and the breaker never opens, so a process asking it during an outage keeps retrying."""
    port = free_port()
    file = workdir / "agencies.toml"
    file.write_text(
        f'[[agency]]\nid = "bank"\nname = "银行"\nkind = "bank"\nendpoint = "http://127.0.0.1:{port}"\n'
        'api_key = "sim-bank"\nfollowups = ["freeze"]\ntimeout_seconds = 20.0\nretries = 10\nbackoff_ms = 1500.0\n'
        "breaker_failures = 1000\nsimulator = { latency_median_ms = 100, latency_sigma = 0 }\n"
    )
    with simulator_process(file):
        yield file, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def cluster(workdir: Path, bank: tuple[Path, str]) -> Iterator[Cluster]:
    """Two processes on PostgreSQL and Redis with 2-second leases (no nginx: the test picks the process)."""
    store_url = asyncio.run(fresh_store_url("postgres", workdir, "cc_fencing_test"))
    env = {"CC_QUERIES__AGENCIES_FILE": str(bank[0]), "CC_QUERIES__DEADLINE_SECONDS": "60",
           "CC_CLUSTER__LEASE_SECONDS": "2"}  # fmt: skip
    cluster = Cluster(workdir, processes=2, store_url=store_url, env=env)
    cluster.init()
    cluster.add_user("judge1", "judge", PASSWORD)
    cluster.add_user("sup1", "supervisor", PASSWORD)
    try:
        asyncio.run(cluster.start(proxy=False))
        yield cluster
    finally:
        for server in cluster.servers:  # a stopped process would not hear the stop signal
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGCONT)
        cluster.stop()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not NGINX.exists(), reason="the cluster harness needs nginx (setup.sh --dev)")
async def test_a_process_paused_past_its_lease_does_not_ask_again(cluster: Cluster, bank: tuple[Path, str]) -> None:
    """The process running a query and a follow-up is stopped past its lease while the bank is down; the
    other takes both over and asks the bank; the first is let go while that request is under way. The
    bank is asked once per job and the freeze is sent once: the woken process is refused at its next write
    (its claim of the next attempt) and stops, before sending."""
    a, b = (server.url for server in cluster.servers)
    paused = cluster.servers[0]
    sim = bank[1]
    async with aiohttp.ClientSession() as http:

        async def login(username: str) -> dict[str, str]:
            async with http.post(f"{b}/api/auth/login", json={"username": username, "password": PASSWORD}) as answer:
                assert answer.status == 200, await answer.text()
                return {"Authorization": f"Bearer {(await answer.json())['token']}"}

        async def call(method: str, url: str, auth: dict[str, str], status: int, **kw: Any) -> dict[str, Any]:
            async with http.request(method, url, headers=auth, **kw) as answer:
                assert answer.status == status, await answer.text()
                return dict(await answer.json())

        async def until(what: str, check: Any, within: float = 40.0) -> Any:
            for _ in range(int(within / 0.05)):
                if found := await check():
                    return found
                await asyncio.sleep(0.05)
            raise AssertionError(f"{what}: not within {within} s (simulator: {await stats()})")

        async def stats() -> dict[str, Any]:
            async with http.get(f"{sim}/_sim/stats") as answer:
                return dict(await answer.json())

        async def profile(**changes: Any) -> None:
            async with http.put(f"{sim}/_sim/profile", json=changes) as answer:
                assert answer.status == 200, await answer.text()

        judge, supervisor = await login("judge1"), await login("sup1")
        judge_id = (await call("GET", f"{b}/api/me", judge, 200))["user"]["id"]
        case = {"case_number": "(2026)黑0102执77号", "title": "借款合同纠纷执行", "judge_ids": [judge_id],
                "parties": [{"kind": "person", "name": "张三", "identifier": PERSON}]}  # fmt: skip
        case_id = (await call("POST", f"{b}/api/cases", supervisor, 201, json=case))["id"]  # judges open no case
        query = {"case_id": case_id, "reason": "查控被执行人财产"}

        async def finished(query_id: str) -> dict[str, Any] | None:
            found = await call("GET", f"{b}/api/queries/{query_id}", judge, 200)
            return found if found["complete"] and all(j["status"] != "pending" for j in found["jobs"]) else None

        first = await call("POST", f"{a}/api/queries", judge, 202, json=query)
        asset = (await until("first query", lambda: finished(first["id"])))["jobs"][0]["assets"][0]
        freeze = await call("POST", f"{b}/api/followups", judge, 201,
                            json={"asset_id": asset["id"], "action": "freeze", "reason": "保全"})  # fmt: skip

        # the bank goes down; process 1 starts the freeze and a second query, and retries both
        await profile(outage=True)
        await call("POST", f"{a}/api/followups/{freeze['id']}/approve", supervisor, 200, json={"note": "同意"})
        second = await call("POST", f"{a}/api/queries", judge, 202, json=query)
        await until("both refused once", lambda: _at_least(stats(), "outage", 2))
        paused.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            # the bank is back, slow; process 2 takes both over once process 1's leases lapse, and asks
            await profile(outage=False, latency_median_ms=BANK_LATENCY_MS)
            job_id = (await call("GET", f"{b}/api/queries/{second['id']}", judge, 200))["jobs"][0]["job_id"]
            await until("process 2 asks", lambda: _asked(stats(), job_id, freeze["id"]))
        finally:
            paused.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        # ... and while those requests are under way, process 1 wakes up
        done = await until("second query", lambda: finished(second["id"]))
        assert done["jobs"][0]["status"] == "answered" and done["jobs"][0]["attempts"] >= 2

        async def confirmed() -> dict[str, Any] | None:
            found = await call("GET", f"{b}/api/followups", judge, 200)
            return next((f for f in found["followups"] if f["id"] == freeze["id"] and f["status"] == "confirmed"), None)

        await until("freeze confirmed", confirmed)
        seen = await stats()
        asked = [first["jobs"][0]["job_id"], job_id, freeze["id"]]
        assert {key: seen["new_requests"].get(key) for key in asked} == dict.fromkeys(asked, 1), seen
        assert {key: seen["replays"].get(key, 0) for key in asked} == dict.fromkeys(asked, 0), seen  # none twice
        assert [entry[0] for entry in seen["followups_applied"]] == [freeze["id"]]  # the freeze sent once
        # process 1 met the fence (and stopped) rather than never trying: its log says so
        log = cluster.workdir / "node-1.log"
        await until("process 1 fenced out", lambda: _logged(log, f"job {job_id}", f"follow-up {freeze['id']}: stopped"))


async def _at_least(stats: Any, fault: str, times: int) -> bool:
    seen = await stats
    return int(seen["injected"].get(fault, 0)) >= times


async def _asked(stats: Any, *keys: str) -> bool:
    seen = await stats
    return all(key in seen["new_requests"] for key in keys)


async def _logged(log: Path, *needles: str) -> bool:
    lines = (await asyncio.to_thread(log.read_bytes)).decode(errors="replace").splitlines()
    return all(any(needle in line and "stopped" in line for line in lines) for needle in needles)
