"""The SQL written once (``persistence.database`` and the ``*_sql`` modules) on both adapters: the domain
tables that had no store test of their own, the dialect rewrite, and the SQLite path without asyncpg."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest

from core.errors import Conflict, NotFound
from core.ids import CourtId, QueryId, UnitId, UserId
from operations.models import Operation, OperationKind, OperationStatus
from persistence.gb_port import GbChannel, GbDevice
from persistence.geofence_models import AlarmOn, StoredGeofence
from persistence.models import Court, CourtLevel, Role, UnitKind
from persistence.port import Store
from persistence.query_models import AuditDraft, Query, submit_audit
from persistence.sqlite_database import sqlite_spelling
from query_control.audit import verify
from tasks.models import Task, TaskKind, TaskStatus
from tests.test_query_store import _case, _job

COURT = CourtId("HLJ01")


async def _world(store: Store) -> UserId:
    await store.upsert_court(Court(COURT, "哈尔滨市中级人民法院", CourtLevel.INTERMEDIATE, None))
    await store.add_unit(unit_id=UnitId("u1"), name="一号", kind=UnitKind.HANDHELD, court_id=COURT, secret_hash="s")
    user = await store.add_user(username="c", display_name="c", password_hash="x", role=Role.SUPERVISOR,
                                court_id=COURT)  # fmt: skip
    return user.id


# pure ---------------------------------------------------------------------------------------------------
def test_sqlite_reads_postgres_spelling() -> None:
    assert sqlite_spelling("SELECT * FROM t WHERE ($1::text[] IS NULL OR c = ANY($1)) AND d = $2 FOR UPDATE") == (
        "SELECT * FROM t WHERE (?1 IS NULL OR c IN (SELECT value FROM json_each(?1))) AND d = ?2"
    )
    assert sqlite_spelling("SELECT LEAST(a, $10)") == "SELECT min(a, ?10)"


def test_the_sqlite_store_does_not_load_asyncpg() -> None:
    """The embedded default must run where asyncpg is not installed: nothing on its path imports it."""
    code = (
        "import sys\n"
        "from persistence.sqlite import SqliteStore\n"
        "from persistence.factory import build_store\n"
        "from config.settings import StoreSettings\n"
        "build_store(StoreSettings(url='sqlite:///:memory:'))\n"
        "assert 'asyncpg' not in sys.modules, sorted(m for m in sys.modules if 'asyncpg' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# both adapters ------------------------------------------------------------------------------------------
async def test_tasks_move_only_from_allowed_states(store: Store) -> None:
    boss = await _world(store)
    task = Task("t1", UnitId("u1"), COURT, TaskKind.GO_TO, "前往", {"lat": 45.7, "lon": 126.6}, boss, 1, None,
                TaskStatus.QUEUED, 1, None)  # fmt: skip
    assert await store.add_task(task) == task
    with pytest.raises(Conflict, match="t1"):
        await store.add_task(task)
    assert await store.move_task("t1", TaskStatus.DONE, allowed=[TaskStatus.IN_PROGRESS], at_ms=2, note=None) is None
    moved = await store.move_task("t1", TaskStatus.DELIVERED, allowed=[TaskStatus.QUEUED], at_ms=3, note="好")
    assert moved is not None and (moved.status, moved.updated_ms, moved.note) == (TaskStatus.DELIVERED, 3, "好")
    assert [t.id for t in await store.list_tasks(court_ids=[COURT], statuses=[TaskStatus.DELIVERED])] == ["t1"]
    assert await store.list_tasks(court_ids=[], statuses=None) == []
    assert await store.list_tasks(unit_id=UnitId("u2")) == []
    with pytest.raises(NotFound):
        await store.move_task("nope", TaskStatus.DONE, allowed=[TaskStatus.QUEUED], at_ms=4, note=None)


async def test_operations_and_their_events(store: Store) -> None:
    boss = await _world(store)
    op = Operation("op1", COURT, OperationKind.SEARCH, "搜查", None, boss, "张警官", {"lat": 45.7, "lon": 126.6},
                   (UnitId("u1"),), OperationStatus.PLANNED, boss, 1, None, None)  # fmt: skip
    assert await store.add_operation(op) == op
    with pytest.raises(Conflict, match="op1"):
        await store.add_operation(op)
    started = await store.move_operation("op1", OperationStatus.UNDER_WAY, allowed=[OperationStatus.PLANNED], at_ms=5)
    assert started is not None and started.started_ms == 5
    assert (
        await store.move_operation("op1", OperationStatus.UNDER_WAY, allowed=[OperationStatus.PLANNED], at_ms=6) is None
    )
    emptied = await store.set_operation_units("op1", [])
    assert emptied is not None and emptied.unit_ids == ()
    assert await store.set_operation_units("op1", ["U1"], replacing=["U9"]) is None  # type: ignore[list-item]
    assert await store.set_operation_units("op1", [], allowed=[OperationStatus.PLANNED]) is None
    event = await store.add_operation_event("op1", kind="note", text="到达", at_ms=7, user_id=None, ref={"a": 1})
    assert (await store.operation_events("op1")) == [event]
    live = await store.list_operations(court_ids=[COURT], statuses=[OperationStatus.UNDER_WAY])
    assert [o.id for o in live] == ["op1"]


async def test_geofences_and_gb_devices(store: Store) -> None:
    boss = await _world(store)
    fence = StoredGeofence("f1", COURT, "禁区", "no_go", AlarmOn.ENTER, {"type": "Point", "coordinates": [126.6, 45.7]},
                           50.0, boss, 1)  # fmt: skip
    await store.add_geofences([fence])
    with pytest.raises(Conflict):
        await store.add_geofences([fence])
    assert await store.list_geofences([COURT]) == [fence] and await store.list_geofences(None) == [fence]
    assert await store.list_geofences([CourtId("HLJ02")]) == []
    await store.delete_geofence("f1")
    with pytest.raises(NotFound):
        await store.get_geofence("f1")

    await store.add_gb_device(GbDevice(UnitId("u1"), "34020000001320000001", "ha1"))
    assert (await store.find_gb_device("34020000001320000001")) == await store.gb_device_of(UnitId("u1"))
    channel = GbChannel(UnitId("u1"), "34020000001320000002", "前", "海康", "X", "ON", "34020000001320000001", 1)
    await store.save_gb_channels([channel])
    await store.save_gb_channels([dataclasses.replace(channel, status="OFF", updated_ms=2)])
    assert [(c.status, c.updated_ms) for c in await store.gb_channels(UnitId("u1"))] == [("OFF", 2)]


async def test_the_query_guard_counts_one_judge_at_a_time(store: Store) -> None:
    judge = await _world(store)
    first, new = await store.claim_query_key(judge, "k1", "h", 10)
    assert new and first.query_id is None
    again, new_again = await store.claim_query_key(judge, "k1", "h", 11)
    assert again == first and not new_again
    slot, taken = await store.claim_query_slot(judge, "k2", "h", 12, 0, lambda times: times == [10])
    assert taken and slot is not None and slot.key == "k2"
    refused, _ = await store.claim_query_slot(judge, "k3", "h", 13, 0, lambda times: len(times) < 2)
    assert refused is None
    await store.release_query_key(judge, "k2")
    assert await store.judge_query_times(judge, 0) == []


async def test_queries_and_other_entries_keep_one_audit_chain_when_written_at_once(store: Store) -> None:
    """A query's entry is appended inside the query's own transaction; under concurrency with other appends
    the chain stays contiguous and every link holds (the chain's lock is taken in both paths)."""
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id

    async def submit(n: int) -> None:
        query = Query(QueryId(f"q{n}"), case_id, judge, "查控", n, n + 30_000)
        jobs = [_job(query.id, f"q{n}-j{i}", party, f"bank-{i}") for i in range(3)]
        await store.add_query(query, jobs, audit=submit_audit(query, jobs))

    async def view(n: int) -> None:
        await store.append_audit(AuditDraft("query.view", judge, n, "", case_id, QueryId(f"q{n}")))

    await asyncio.gather(*(submit(n) for n in range(15)), *(view(n) for n in range(15)))
    entries = await store.audit_entries()
    assert [e.seq for e in entries] == list(range(1, 31))
    assert (await verify(store)).ok
    submitted = {e.query_id for e in entries if e.action == "query.submit"}
    assert submitted == {q.id for q in await store.list_queries()} and len(submitted) == 15
