"""Findings of the review after the cross-court round, each against a real server on SQLite and PostgreSQL:

a. a unit's recordings were found by reading up to a million audit entries: now an indexed, paged read;
b. the 运维 overview (process-wide figures) answered a supervisor of a lower court: now only those who
   oversee every court (administrators, the top court's supervisors) read it;
c. ``POST /api/entrustments`` had no rate: now per user and per court, 429 with Retry-After;
d. a unit taken off an operation under way kept its go-to task: now it is cancelled, the unit told, audited.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from command_center.keys import AUDIT
from config.settings import BusSettings, EntrustmentSettings, StoreSettings
from core.ids import CourtId, UnitId
from media.evidence import SEGMENT_ACTION
from persistence.migrations import load_migrations
from persistence.models import Role
from tasks.models import TaskStatus
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World, fresh_pg_schema, fresh_redis_namespace
from tests.test_cross_court import NANGANG_UNIT, TARGET, _json, _people_and_units
from tests.test_cross_court import _entrust as entrust

UNIT = "HLJ0102-U01"
FEW = EntrustmentSettings(max_per_user_hour=3, max_per_court_hour=5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    if request.param == "sqlite":
        built = await make_world(entrustments=FEW)
        await _people_and_units(built)
        yield built
        return
    async with fresh_pg_schema() as schema:
        built = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=schema, entrustments=FEW)
        await _people_and_units(built)
        yield built


# a. recordings ----------------------------------------------------------------------------------------------


async def test_a_units_recordings_are_read_a_page_at_a_time(world: World) -> None:
    audit = world.client.app[AUDIT]
    for n in range(5):  # the unit's segments, among other units' and other entries
        await audit.record(SEGMENT_ACTION, None, details={"unit_id": UNIT, "file": f"s{n}.mkv", "sha256": f"h{n}"})
        await audit.record(SEGMENT_ACTION, None, details={"unit_id": NANGANG_UNIT, "file": "x.mkv", "sha256": "x"})
        await audit.record("media.view", None, details={"unit_id": UNIT})
    path = f"/api/units/{UNIT}/recordings"
    first = await _json(await world.client.get(f"{path}?limit=2", headers=world.auth("operator")), 200)
    assert [s["file"] for s in first["segments"]] == ["s0.mkv", "s1.mkv"] and first["next_after"] is not None
    files, after = [s["file"] for s in first["segments"]], first["next_after"]
    while after is not None:
        page = await _json(await world.client.get(f"{path}?limit=2&after={after}", headers=world.auth("operator")), 200)
        files += [s["file"] for s in page["segments"]]
        after = page["next_after"]
    assert files == [f"s{n}.mkv" for n in range(5)]
    whole = await _json(await world.client.get(path, headers=world.auth("operator")), 200)
    assert len(whole["segments"]) == 5 and whole["next_after"] is None
    for bad in ("limit=0", "limit=501", "after=-1", "after=x"):
        answer = await world.client.get(f"{path}?{bad}", headers=world.auth("operator"))
        assert answer.status == 422, bad
        assert bad.split("=")[0] in (await answer.json())["error"]["message"]


def test_migration_030_indexes_the_segments_recorded_before_it() -> None:
    """Segments audited before 030 are found through the new column too (it is filled from the details)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    migrations = load_migrations("sqlite")
    for migration in [m for m in migrations if m.version < 30]:
        db.executescript(migration.sql)
    insert = (
        "INSERT INTO audit_log (seq, action, actor_id, at_ms, reason, details, prev_hash, hash)"
        " VALUES (?, ?, NULL, 1, '', ?, 'p', ?)"
    )
    db.execute(insert, (1, SEGMENT_ACTION, '{"file":"a.mkv","unit_id":"U1"}', "h1"))
    db.execute(insert, (2, "query.run", '{"n":1}', "h2"))
    db.execute(insert, (3, SEGMENT_ACTION, '{"unit_id":7}', "h3"))  # not a unit id: left out
    for migration in [m for m in migrations if m.version == 30]:
        db.executescript(f"BEGIN; {migration.sql}; COMMIT;")
    assert list(db.execute("SELECT seq, unit_id FROM audit_log ORDER BY seq")) == [(1, "U1"), (2, None), (3, None)]
    plan = " ".join(str(r) for r in db.execute("EXPLAIN QUERY PLAN SELECT * FROM audit_log WHERE unit_id = 'U1'"
                                                " AND action = 'a' AND seq > 0 ORDER BY seq LIMIT 10"))  # fmt: skip
    assert "audit_log_unit_idx" in plan, plan


# b. the 运维 overview ------------------------------------------------------------------------------------------


async def test_the_ops_overview_is_for_those_who_oversee_every_court(world: World) -> None:
    await world.add_user("daoli_sup", Role.SUPERVISOR, "HLJ0102")
    await world.add_user("top_sup", Role.SUPERVISOR, "HLJ")
    for who in ("daoli_sup", "top_sup"):
        world.tokens[who] = await world.login(who)
    for who in ("daoli_sup", "supervisor"):  # a basic court's, and the intermediate court's (HLJ01)
        refused = await world.client.get("/api/ops/overview", headers=world.auth(who))
        assert refused.status == 403, who
        assert "every court" in (await refused.json())["error"]["message"]
    for who in ("top_sup", "admin"):
        overview = await _json(await world.client.get("/api/ops/overview", headers=world.auth(who)), 200)
        assert "node" in overview and "units" in overview


async def test_verifying_the_recordings_is_for_those_who_oversee_every_court(world: World) -> None:
    """Its answer names the recorded files of every court: refused (403, the overview's wording) to a lower
    court's supervisor, as the overview is."""
    await world.add_user("top_sup", Role.SUPERVISOR, "HLJ")
    world.tokens["top_sup"] = await world.login("top_sup")
    refused = await world.client.post("/api/ops/verify-recordings", headers=world.auth("supervisor"))
    assert refused.status == 403
    assert "supervisors who oversee every court" in (await refused.json())["error"]["message"]
    for who in ("top_sup", "admin"):
        run = await _json(await world.client.post("/api/ops/verify-recordings", headers=world.auth(who)), 200)
        assert set(run["counts"]) == {"ok", "mismatch", "missing"}


# c. the entrustments' rate ----------------------------------------------------------------------------------


async def test_requests_for_entrustments_are_rated_per_user_and_per_court(world: World) -> None:
    await world.add_user("daoli2", Role.OPERATOR, "HLJ0102")
    world.tokens["daoli2"] = await world.login("daoli2")
    for _ in range(FEW.max_per_user_hour):
        await _json(await entrust(world, "daoli"), 201)
    refused = await entrust(world, "daoli")
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 3600
    body = await refused.json()
    assert body["error"]["code"] == "too_many_requests" and "per user" in body["error"]["message"]
    for _ in range(FEW.max_per_court_hour - FEW.max_per_user_hour):  # another operator of the same court
        await _json(await entrust(world, "daoli2"), 201)
    by_court = await entrust(world, "daoli2")
    assert by_court.status == 429 and "per court (court HLJ0102)" in (await by_court.json())["error"]["message"]
    await _json(await entrust(world, "nangang"), 201)  # another court has its own allowance
    listed = await _json(await world.client.get("/api/entrustments", headers=world.auth("daoli")), 200)
    assert len(listed["entrustments"]) == FEW.max_per_court_hour  # the refused ones left nothing behind


@pytest.mark.postgres
async def test_the_entrustment_rate_holds_across_server_processes(make_world: AppFactory) -> None:
    """Two processes on one PostgreSQL and Redis: the user's allowance is one, not one per process."""
    async with fresh_pg_schema() as schema, fresh_redis_namespace() as namespace:
        shared = {"store": StoreSettings(url=POSTGRES_DSN), "schema": schema, "entrustments": FEW,
                  "bus": BusSettings(url=REDIS_URL, namespace=namespace)}  # fmt: skip
        first = await make_world(**shared)
        await _people_and_units(first)
        second = await make_world(**shared)
        second.passwords |= first.passwords
        second.tokens["daoli"] = await second.login("daoli")
        for n in range(FEW.max_per_user_hour):
            await _json(await entrust(first if n % 2 else second, "daoli"), 201)
        for world in (first, second):
            refused = await entrust(world, "daoli")
            assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1


# d. a unit taken off an operation under way ---------------------------------------------------------------


async def test_a_unit_taken_off_an_operation_under_way_has_its_task_called_off(world: World) -> None:
    plan = {"kind": "search", "title": "联合搜查", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": [UNIT, NANGANG_UNIT]}  # fmt: skip
    op = (await _json(await world.client.post("/api/operations", json=plan, headers=world.auth("operator")), 201))[
        "operation"
    ]
    await _json(await world.client.post(f"/api/operations/{op['id']}/start", json={},
                                        headers=world.auth("operator")), 200)  # fmt: skip
    unit_socket = await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"))
    sent = await _next_task_message(unit_socket, "task")
    assert sent["task"]["details"]["operation_id"] == op["id"]
    await _json(await world.client.put(f"/api/operations/{op['id']}/units", json={"unit_ids": [NANGANG_UNIT]},
                                       headers=world.auth("operator")), 200)  # fmt: skip
    told = await _next_task_message(unit_socket, "task_cancelled")
    assert told["task_id"] == sent["task"]["id"]
    [task] = await world.store.list_tasks(unit_id=UnitId(UNIT))
    assert task.status is TaskStatus.CANCELLED and "联合搜查" in (task.note or "")
    [kept] = await world.store.list_tasks(unit_id=UnitId(NANGANG_UNIT))
    assert kept.status is TaskStatus.QUEUED  # the unit still on the operation keeps its task
    recalled = [a for a in await world.store.audit_entries() if a.action == "operation.unit_recalled"]
    assert [(a.details["unit_id"], a.details["task_id"]) for a in recalled] == [(UNIT, task.id)]
    await unit_socket.close()
    assert await world.store.list_tasks(unit_id=UnitId(UNIT), court_ids=[CourtId("HLJ0102")], statuses=[
        TaskStatus.QUEUED, TaskStatus.DELIVERED]) == []  # fmt: skip


async def _next_task_message(socket: Any, kind: str) -> dict[str, Any]:
    while True:
        message = await socket.receive_json(timeout=5.0)
        if message.get("type") == kind:
            return dict(message)
