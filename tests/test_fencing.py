"""Nothing runs twice: a lease holder paused past its lease is fenced out by the store.

Fast part: the epochs the coordinators grant (real Redis, and the single-process one), and the store's fence
on both adapters (a stale epoch refused beside a good write, a newer one accepted). Process part: two real
server processes on PostgreSQL and Redis and the agency simulator as its own process; the one running a query
and a follow-up is stopped (SIGSTOP) past its lease, the other takes both over and finishes them, and the
first is let go again (SIGCONT): every agency is asked once and the freeze is sent once, counted at the
simulator.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from cluster.local import LocalCoordinator
from cluster.port import fence_of
from cluster.redis import RedisCoordinator
from core.errors import FencedOut
from core.fencing import Fence, admitted, newest_per_lease, next_epoch
from core.ids import AgencyId, FollowUpId, JobId, QueryId
from persistence.port import Store
from persistence.query_models import AssetDraft, FollowUp, FollowUpAction, FollowUpStatus, JobOutcome, JobStatus, Query
from tests.conftest import REDIS_URL
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
        await store.add_query(Query(QueryId(q), case_id, judge, "查控", 1, 30_001), jobs)
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
