"""The PostgreSQL pool (persistence/pg_database.py) hands connections back without asyncpg's reset query (a round
trip per call saved), and a connection handed back is still clean: no transaction, no lock left held."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from command_center.bootstrap import import_courts
from core.ids import AgencyId, CourtId, JobId, QueryId
from persistence.models import Role
from persistence.pg_database import PgDatabase
from persistence.postgres import PostgresStore
from persistence.queries_sql import AUDIT_LOCK
from persistence.query_guard_sql import QUERY_SLOT_LOCK
from persistence.query_models import AuditDraft, Job, JobOutcome, JobStatus, PartyKind, Query, submit_audit
from tests.conftest import COURTS_FILE, POSTGRES_DSN

pytestmark = pytest.mark.postgres


async def test_a_released_connection_ran_our_statement_last_not_a_reset() -> None:
    db = PgDatabase(POSTGRES_DSN, min_size=1, max_size=1, schema=None)
    await db.open()
    watcher = await asyncpg.connect(POSTGRES_DSN)
    try:
        pid = await db.fetchval("SELECT pg_backend_pid() /* cc-pool-test */")
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last == "SELECT pg_backend_pid() /* cc-pool-test */", last
    finally:
        await watcher.close()
        await db.close()


async def test_a_connection_handed_back_holds_no_transaction_and_no_lock() -> None:
    db = PgDatabase(POSTGRES_DSN, min_size=1, max_size=1, schema=None)
    await db.open()
    watcher = await asyncpg.connect(POSTGRES_DSN)
    try:
        async with db.transaction() as conn:
            await conn.hold(0x43435F54, 1)  # a transaction-scoped advisory lock
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.hold(0x43435F54, 2)
                raise RuntimeError("the unit of work failed")
        state = await watcher.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        assert state == "idle", state  # not "idle in transaction"
        held = await watcher.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid)
        assert held == 0
    finally:
        await watcher.close()
        await db.close()


async def test_writers_queued_at_a_lock_leave_the_pool_to_everyone_else() -> None:
    """A hundred submissions queued at the audit chain's lock once held every pooled connection while they
    waited, and the agencies' answers could not be stored until the queue drained (seconds at 100 queries).
    Writers of one lock now queue in the process: one connection waits at the lock, the rest serve others."""
    key = (0x43435F54, 3)
    db = PgDatabase(POSTGRES_DSN, min_size=1, max_size=2, schema=None)
    await db.open()
    other_process = await asyncpg.connect(POSTGRES_DSN)  # holds the lock, as another server process would
    order: list[int] = []

    async def writer(i: int) -> None:
        async with db.transaction(hold=key) as conn:
            order.append(i)
            await conn.hold(*key)  # held already: taken again in the same unit it costs nothing and waits for nothing

    try:
        async with other_process.transaction():
            await other_process.execute("SELECT pg_advisory_xact_lock($1, $2)", *key)
            writers = [asyncio.create_task(writer(i)) for i in range(5)]
            for _ in range(100):  # until one writer waits at the lock in the database
                waiting = await other_process.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid = $1 AND objid = $2",
                    *key,
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting == 1
            assert await asyncio.wait_for(db.fetchval("SELECT 1"), 2.0) == 1  # the pool still serves others
            assert order == []
        await asyncio.wait_for(asyncio.gather(*writers), 5.0)
        assert sorted(order) == [0, 1, 2, 3, 4]
    finally:
        await other_process.close()
        await db.close()


async def test_the_brokers_grouped_writes_have_connections_no_other_traffic_can_take(pg_schema: str) -> None:
    """Submissions queued at their judges' locks and an audit append at the chain's lock once held every pooled
    connection, and agencies' answers waited for one. The broker's grouped writes (attempts counted, outcomes
    recorded) now run on connections kept for them: they go through while every other connection is taken,
    and the readers that come after wait for a shared one instead of borrowing a kept one."""
    store = PostgresStore(POSTGRES_DSN, schema=pg_schema, max_size=4, reserved=2)
    await store.open()
    await store.migrate()
    await import_courts(store, COURTS_FILE)
    judges = [
        await store.add_user(
            username=f"j{i}", display_name="j", password_hash="h", role=Role.JUDGE, court_id=CourtId("HLJ0102")
        )
        for i in range(4)
    ]
    case = await store.add_case(
        case_number="(2026)黑0102执1号", court_id=CourtId("HLJ0102"), title="t", created_by=judges[0].id,
        created_ms=1, parties=[(PartyKind.PERSON, "张三", "11010519491231002X")], judge_ids=[judges[0].id],
    )  # fmt: skip
    query = Query(QueryId("q1"), case.id, judges[0].id, "查控", 1, 30_001)
    job = Job(JobId("j1"), query.id, case.parties[0].id, AgencyId("bank-1"), JobStatus.PENDING, 0, None, 1, 1)
    await store.add_query(query, [job], audit=submit_audit(query, [job]))
    other_process = await asyncpg.connect(POSTGRES_DSN)  # holds the locks, as another server process would
    try:
        async with other_process.transaction():
            await other_process.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
            for judge in judges:
                await other_process.execute("SELECT pg_advisory_xact_lock($1, $2)", QUERY_SLOT_LOCK, judge.id)
            audit = asyncio.create_task(store.append_audit(AuditDraft("query.watch", judges[0].id, 2, "看")))
            claims = [asyncio.create_task(store.claim_query_slot(j.id, "k", "h", 2, 0, lambda _: True)) for j in judges]
            for _ in range(100):  # until the shared connections wait at the locks in the database
                waiting = await other_process.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                if waiting >= 2:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the other writers, had they found a connection, would be waiting by now
            reader = asyncio.create_task(store.get_query(query.id))
            counted = await asyncio.wait_for(store.start_job_attempts([job.id], 3), 5.0)
            [ended] = await asyncio.wait_for(store.finish_jobs([JobOutcome(job.id, JobStatus.NO_ASSETS, 4)]), 5.0)
            assert counted == {job.id: 1} and isinstance(ended, tuple) and ended[0].status is JobStatus.NO_ASSETS
            assert not reader.done()  # every shared connection waits at a lock: the kept ones were not lent
        await asyncio.wait_for(asyncio.gather(audit, reader, *claims), 5.0)
        assert all(created for _, created in [c.result() for c in claims])
    finally:
        await other_process.close()
        await store.close()


def test_a_reservation_leaves_a_shared_connection() -> None:
    with pytest.raises(ValueError, match="fewer than"):
        PgDatabase(POSTGRES_DSN, min_size=1, max_size=2, schema=None, reserved=2)
