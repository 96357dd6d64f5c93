"""The position writer (field_units/writer.py) against real PostgreSQL: a batch held up in the database does not
hold up the batches after it, and callers of a large batch are answered a slice at a time with the loop turning
in between (a committed batch of thousands must not wake thousands of sockets in one turn)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from command_center.bootstrap import import_courts
from core.ids import CourtId, UnitId
from field_units.writer import ANSWER_SLICE, PositionWriter
from persistence.factory import build_store
from persistence.models import Position, UnitKind
from persistence.port import Store
from tests.conftest import COURTS_FILE, POSTGRES_DSN, fresh_pg_schema, store_settings

pytestmark = pytest.mark.postgres


def _pos(unit: str, seq: int) -> Position:
    return Position(UnitId(unit), seq, 1_000 * seq, 45.75, 126.64, 5.0, 1.2, 90.0, None, 80.0, False, 1_000 * seq)


@pytest.fixture
async def pg_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    async with fresh_pg_schema() as schema:
        store = build_store(store_settings("postgres", tmp_path), schema=schema)
        await store.open()
        try:
            await store.migrate()
            await import_courts(store, COURTS_FILE)
            for i in range(ANSWER_SLICE * 3):
                await store.add_unit(unit_id=UnitId(f"U{i}"), name=f"U{i}", kind=UnitKind.HANDHELD,
                                     court_id=CourtId("HLJ0102"), secret_hash=f"s-{i}")  # fmt: skip
            yield store, schema
        finally:
            await store.close()


async def test_a_batch_held_up_in_the_database_does_not_hold_up_the_next(pg_store: tuple[Store, str]) -> None:
    store, schema = pg_store
    await store.insert_positions([_pos("U0", 1)])  # U0 has a latest position: its row can be locked
    writer = PositionWriter(store, max_delay=0.0)
    await writer.start()
    blocker = await asyncpg.connect(POSTGRES_DSN, server_settings={"search_path": schema})
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM unit_latest WHERE unit_id = 'U0' FOR UPDATE")
        held = writer.write([_pos("U0", 2)])  # waits for the lock, inside its transaction
        me = await blocker.fetchval("SELECT pg_backend_pid()")
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
        for _ in range(1000):  # until the writer's transaction waits for our lock
            if await blocker.fetchval(waiting, me):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the first batch never reached the locked row")
        assert await asyncio.wait_for(writer.write([_pos("U1", 1)]), 10) == {("U1", 1)}
        assert not held.done()
        await locked.rollback()
        assert ("U0", 2) in await asyncio.wait_for(held, 10)
    finally:
        await blocker.close()
        await writer.close()
    assert await store.count_positions(UnitId("U0")) == 2 and await store.count_positions(UnitId("U1")) == 1


async def test_the_callers_of_a_large_batch_are_answered_a_slice_a_turn(pg_store: tuple[Store, str]) -> None:
    store, _ = pg_store
    writer = PositionWriter(store, max_batch=ANSWER_SLICE * 3, max_delay=10.0)
    await writer.start()
    order: list[str] = []

    async def unit(i: int) -> None:
        await writer.write([_pos(f"U{i}", 1)])
        order.append("answered")

    async def turns() -> None:
        while True:
            await asyncio.sleep(0)
            order.append("turn")

    try:
        callers = [asyncio.create_task(unit(i)) for i in range(ANSWER_SLICE * 3)]  # a full batch: flushed at once
        ticker = asyncio.create_task(turns())
        await asyncio.wait_for(asyncio.gather(*callers), 10)
        ticker.cancel()
    finally:
        await writer.close()
    answered = [i for i, what in enumerate(order) if what == "answered"]
    assert len(answered) == ANSWER_SLICE * 3
    between = order[answered[0] : answered[-1]]
    assert between.count("turn") >= 2, "the loop turned between the slices"
    runs = "".join("a" if what == "answered" else "t" for what in between).split("t")
    assert max(len(run) for run in runs) <= ANSWER_SLICE, "no turn woke more than a slice of callers"
