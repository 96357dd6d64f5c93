"""The PostgreSQL pool (persistence/pg_database.py) hands connections back without asyncpg's reset query (a round
trip per call saved), and a connection handed back is still clean: no transaction, no lock left held."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from persistence.pg_database import PgDatabase
from tests.conftest import POSTGRES_DSN

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
