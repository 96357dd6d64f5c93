"""A query is recorded with its audit entry in one transaction, before any agency is asked: when the audit
log cannot be written, the judge gets a 503, nothing is stored and no agency sees a request."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from config.settings import StoreSettings
from query_control.audit import verify
from tests.conftest import POSTGRES_DSN
from tests.query_support import CASE_NUMBER, open_case, query_app, running_fleet, submit, test_agencies

_FAIL_SQLITE = (
    "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_log WHEN NEW.action = 'query.submit'"
    " BEGIN SELECT RAISE(ABORT, 'audit volume is read-only'); END"
)
_FAIL_POSTGRES = """
CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.action = 'query.submit' THEN RAISE EXCEPTION 'audit volume is read-only'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_fails BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fails();
"""


async def _break_audit_log(backend: str, tmp_path: Path, schema: str) -> None:
    """Make every ``query.submit`` audit write fail in the database itself (what a full or read-only volume
    or a revoked grant does), so the app sees a real driver error."""
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "queries.db") as db:
            db.execute(_FAIL_SQLITE)
        return
    conn = await asyncpg.connect(POSTGRES_DSN, server_settings={"search_path": schema})
    try:
        await conn.execute(_FAIL_POSTGRES)
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_failed_audit_write_sends_nothing_and_stores_nothing(
    tmp_path: Path, backend: str, pg_schema: str
) -> None:
    store = StoreSettings(url=POSTGRES_DSN) if backend == "postgres" else None
    schema = pg_schema if backend == "postgres" else None
    async with (
        running_fleet(test_agencies()) as (fleet, pointed),
        query_app(tmp_path, pointed, store=store, schema=schema) as world,
    ):
        case = await open_case(world)
        await _break_audit_log(backend, tmp_path, pg_schema)
        response = await world.client.post(
            "/api/queries",
            json={"case_id": case["id"], "reason": "申请执行人申请查控被执行人财产"},
            headers=world.auth("judge"),
        )
        assert response.status == 503, await response.text()
        problem = await response.json()
        assert "audit log could not be written" in str(problem)
        await asyncio.sleep(0.3)  # time enough for a request that had been started to reach an agency
        requests = sum(sum(sim.stats.new_requests.values()) for sim in fleet.simulators.values())
        assert requests == 0
        assert await world.store.list_queries() == []
        assert [e.action for e in await world.store.audit_entries()].count("query.submit") == 0
        assert (await verify(world.store)).ok
        assert (await world.store.list_cases())[0].case_number == CASE_NUMBER


async def test_the_submit_entry_is_in_the_chain_when_the_query_is_answered(tmp_path: Path) -> None:
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        query = await submit(world, case["id"])
        entries = await world.store.audit_entries()
        submitted = [e for e in entries if e.action == "query.submit"]
        assert [e.query_id for e in submitted] == [query["id"]]
        assert submitted[0].details["jobs"] == len(query["jobs"])
        assert (await verify(world.store)).ok
