"""The PostgreSQL pool (persistence/pg_database.py) hands connections back without asyncpg's reset query (a round
trip per call saved), and a connection handed back is still clean: no transaction, no lock left held."""

from __future__ import annotations

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
