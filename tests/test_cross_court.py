"""Cross-court command across real courts of the tree, on SQLite and PostgreSQL: an upper court runs an
operation with units of two lower courts (异地调度), and a court entrusts a task to another court's centre
(执行委托), which accepts, assigns its own units, reports and completes it while the asking court follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from command_center.bootstrap import import_courts
from command_center.credentials import lookup_hash, new_device_secret
from config.settings import StoreSettings
from core.ids import CourtId, UnitId
from entrustments.models import MOVES, Entrustment, EntrustmentStatus
from operations.models import Operation, OperationKind, OperationStatus
from persistence.models import Role, UnitKind
from persistence.port import Store
from query_control.audit import verify
from tests.conftest import COURTS_FILE, POSTGRES_DSN, AppFactory, World, fresh_pg_schema
from tests.test_live_tracking import fix, open_screen

DAOLI_UNIT, NANGANG_UNIT = "HLJ0102-U01", "HLJ0103-U01"
AIHUI_UNIT, AIHUI_OTHER = "HLJ1102-U01", "HLJ1102-U02"
TARGET = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}
PEOPLE = {"daoli": "HLJ0102", "nangang": "HLJ0103", "daowai": "HLJ0104", "aihui": "HLJ1102"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    """The app on each store, with an operator in four basic courts (two cities) and units in three."""
    if request.param == "sqlite":
        built = await make_world()
        await _people_and_units(built)
        yield built
        return
    async with fresh_pg_schema() as schema:
        built = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=schema)
        await _people_and_units(built)
        yield built


async def _people_and_units(world: World) -> None:
    for name, court in PEOPLE.items():
        await world.add_user(name, Role.OPERATOR, court)
        world.tokens[name] = await world.login(name)
    for unit_id in (NANGANG_UNIT, AIHUI_UNIT, AIHUI_OTHER):
        secret = new_device_secret()
        court = CourtId(unit_id.split("-")[0])
        await world.store.add_unit(unit_id=UnitId(unit_id), name=unit_id, kind=UnitKind.BODY_CAMERA, court_id=court,
                                   secret_hash=lookup_hash(secret))  # fmt: skip
        world.tokens[unit_id] = secret


async def _json(response: Any, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _duty_log(world: World, who: str) -> list[dict[str, Any]]:
    body = await _json(await world.client.get("/api/duty/log", headers=world.auth(who)), 200)
    return [e for e in body["entries"] if e["kind"] == "note"]


# 异地调度 --------------------------------------------------------------------------------------------------


async def test_an_upper_court_runs_an_operation_with_units_of_two_lower_courts(world: World) -> None:
    nangang_wall = await open_screen(world, "nangang", "operations")
    assert (await nangang_wall.next("snapshot", topic="operations.HLJ0103"))["operations"] == []
    plan = {"kind": "search", "title": "联合搜查被执行人住所", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": [DAOLI_UNIT, NANGANG_UNIT]}  # fmt: skip
    op = (await _json(await world.client.post("/api/operations", json=plan, headers=world.auth("operator")), 201))[
        "operation"
    ]
    told = await nangang_wall.next("operation", topic="operations.HLJ0103")  # the lower court's wall is told
    assert told["operation"]["id"] == op["id"] and told["event"] == "created"
    daoli_wall = await open_screen(world, "daoli", "operations")  # and a wall opened later has it
    snapshot = await daoli_wall.next("snapshot", topic="operations.HLJ0102")
    assert [o["id"] for o in snapshot["operations"]] == [op["id"]]

    for who, court in (("daoli", "HLJ0102"), ("nangang", "HLJ0103")):
        listed = await _json(await world.client.get("/api/operations", headers=world.auth(who)), 200)
        assert [o["id"] for o in listed["operations"]] == [op["id"]]
        await _json(await world.client.get(f"/api/operations/{op['id']}", headers=world.auth(who)), 200)
        notes = [e for e in await _duty_log(world, who) if e["court_id"] == court]
        assert len(notes) == 1 and "异地调度" in notes[0]["text"] and "联合搜查被执行人住所" in notes[0]["text"]
        # a lower court follows the operation; the upper court's centre commands it
        refused = await world.client.post(f"/api/operations/{op['id']}/start", json={}, headers=world.auth(who))
        assert refused.status == 403, await refused.text()
    outsider = await world.client.get(f"/api/operations/{op['id']}", headers=world.auth("daowai"))
    assert outsider.status == 403
    assert (await _json(await world.client.get("/api/operations", headers=world.auth("daowai")), 200))[
        "operations"
    ] == []

    # a lower court's operation takes no unit of a sibling court, even from a caller who sees both
    sibling = plan | {"court_id": "HLJ0102", "unit_ids": [NANGANG_UNIT]}
    wrong = await world.client.post("/api/operations", json=sibling, headers=world.auth("supervisor"))
    assert wrong.status == 422
    assert (await wrong.json())["error"]["message"] == (
        f"unit_ids: unit {NANGANG_UNIT} is not of court HLJ0102 or a court below it"
    )

    # once its unit leaves the operation, the lower court no longer sees it
    units = f"/api/operations/{op['id']}/units"
    await _json(await world.client.put(units, json={"unit_ids": [DAOLI_UNIT]}, headers=world.auth("operator")), 200)
    assert (await world.client.get(f"/api/operations/{op['id']}", headers=world.auth("nangang"))).status == 403
    dropped = await nangang_wall.next("operation", topic="operations.HLJ0103", event="units")
    assert dropped["courts"] == ["HLJ01"]  # no longer HLJ0103's: its wall drops it
    later = await open_screen(world, "nangang", "operations")
    assert (await later.next("snapshot", topic="operations.HLJ0103"))["operations"] == []
    started = await world.client.post(f"/api/operations/{op['id']}/start", json={}, headers=world.auth("operator"))
    assert started.status == 200
    await daoli_wall.next("operation", topic="operations.HLJ0102", event="under_way")


# 执行委托 --------------------------------------------------------------------------------------------------


def _deadline(hours: float = 24) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


REQUEST = {"to_court_id": "HLJ1102", "task": "查封被执行人名下车辆", "address": "黑河市爱辉区中央街 12 号",
           "lat": 50.2449, "lon": 127.5289, "reason": "被执行人车辆停放于贵院辖区"}  # fmt: skip


async def _entrust(world: World, who: str = "daoli", **fields: Any) -> Any:
    payload = REQUEST | {"deadline": _deadline()} | fields
    return await world.client.post("/api/entrustments", json=payload, headers=world.auth(who))


async def test_an_entrusted_task_is_accepted_carried_out_and_reported_across_courts(world: World) -> None:
    created = await _json(await _entrust(world), 201)
    e = created["entrustment"]
    assert created["sides"] == ["asking"] and e["status"] == "requested" and e["from_court_id"] == "HLJ0102"
    path = f"/api/entrustments/{e['id']}"
    listed = await _json(await world.client.get("/api/entrustments", headers=world.auth("aihui")), 200)
    assert [x["id"] for x in listed["entrustments"]] == [e["id"]]
    assert (await _json(await world.client.get(path, headers=world.auth("aihui")), 200))["sides"] == ["receiving"]

    not_theirs = await world.client.post(f"{path}/accept", json={}, headers=world.auth("daoli"))
    assert not_theirs.status == 403 and "receiving court" in await not_theirs.text()
    accepted = await _json(await world.client.post(f"{path}/accept", json={"note": "已安排"},
                                                   headers=world.auth("aihui")), 200)  # fmt: skip
    assert accepted["entrustment"]["status"] == "accepted" and accepted["entrustment"]["decided_ms"] is not None

    wrong_unit = await world.client.put(f"{path}/units", json={"unit_ids": [DAOLI_UNIT]}, headers=world.auth("aihui"))
    assert wrong_unit.status == 422
    assert (await wrong_unit.json())["error"]["message"] == f"unit_ids: {DAOLI_UNIT} is not a unit of court HLJ1102"
    assigned = await _json(await world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]},
                                                  headers=world.auth("aihui")), 200)  # fmt: skip
    assert assigned["entrustment"]["unit_ids"] == [AIHUI_UNIT]
    tasks = await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))
    assert len(tasks) == 1 and "查封被执行人名下车辆" in tasks[0].title
    assert (tasks[0].details["lat"], tasks[0].details["address"]) == (50.2449, REQUEST["address"])

    # both units report where they are; the asking court sees the assigned one and nothing of the other
    for unit_id, lat in ((AIHUI_UNIT, 50.2450), (AIHUI_OTHER, 50.3)):
        sent = await world.client.post("/api/telemetry/batch", json={"positions": [fix(1, lat=lat, lon=127.53)]},
                                       headers={"Authorization": f"Bearer {world.tokens[unit_id]}"})  # fmt: skip
        assert sent.status == 200, await sent.text()
    followed = await _json(await world.client.get(f"{path}/units", headers=world.auth("daoli")), 200)
    assert [(u["unit_id"], u["position"]["lat"]) for u in followed["units"]] == [(AIHUI_UNIT, 50.2450)]
    assert followed["units"][0]["task"]["id"] == tasks[0].id  # how far the unit has got with its task
    await world.client.post(f"/api/tasks/{tasks[0].id}/cancel", json={"note": "改派"}, headers=world.auth("aihui"))
    followed = await _json(await world.client.get(f"{path}/units", headers=world.auth("daoli")), 200)
    assert (followed["units"][0]["task"]["status"], followed["units"][0]["task"]["note"]) == ("cancelled", "改派")
    for unit_id in (AIHUI_UNIT, AIHUI_OTHER):
        assert (await world.client.get(f"/api/units/{unit_id}", headers=world.auth("daoli"))).status == 403

    await _json(await world.client.post(f"{path}/reports", json={"text": "已到达现场，正在查封"},
                                        headers=world.auth("aihui")), 201)  # fmt: skip
    done = await _json(await world.client.post(f"{path}/complete", json={"reason": "车辆已查封，清单随后移送"},
                                               headers=world.auth("aihui")), 200)  # fmt: skip
    assert done["entrustment"]["status"] == "completed" and done["entrustment"]["ended_ms"] is not None
    timeline = (await _json(await world.client.get(path, headers=world.auth("daoli")), 200))["entrustment"]["timeline"]
    assert [(t["kind"], t["court_id"]) for t in timeline] == [
        ("requested", "HLJ0102"), ("accepted", "HLJ1102"), ("units", "HLJ1102"), ("report", "HLJ1102"),
        ("completed", "HLJ1102"),
    ]  # fmt: skip
    assert timeline[3]["text"] == "已到达现场，正在查封"

    ended = await world.client.get(f"{path}/units", headers=world.auth("daoli"))  # the asking court loses them
    assert ended.status == 403 and "only while it runs" in await ended.text()
    assert (await world.client.get(f"{path}/units", headers=world.auth("aihui"))).status == 200

    for who, court in (("daoli", "HLJ0102"), ("aihui", "HLJ1102")):
        notes = [n["text"] for n in await _duty_log(world, who) if n["court_id"] == court]
        assert len(notes) == 5 and all("查封被执行人名下车辆" in n for n in notes), notes
        assert "已办结：车辆已查封，清单随后移送" in notes[-1]
    entries = await world.store.audit_entries()
    steps = [(a.action, a.details["entrustment_id"]) for a in entries if a.action.startswith("entrustment.")]
    assert steps == [(f"entrustment.{k}", e["id"]) for k in ("requested", "accepted", "units", "report", "completed")]
    assert (await verify(world.store)).ok


async def test_refusal_withdrawal_and_bad_requests_are_answered_precisely(world: World) -> None:
    e = (await _json(await _entrust(world), 201))["entrustment"]
    path = f"/api/entrustments/{e['id']}"
    no_reason = await world.client.post(f"{path}/refuse", json={}, headers=world.auth("aihui"))
    assert no_reason.status == 422 and "reason" in await no_reason.text()
    refused = await _json(await world.client.post(f"{path}/refuse", json={"reason": "地址不在本院辖区"},
                                                  headers=world.auth("aihui")), 200)  # fmt: skip
    assert refused["entrustment"]["status"] == "refused"
    late = await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui"))
    assert late.status == 409 and (await late.json())["error"]["message"] == (
        "entrustment is refused; it cannot become accepted"
    )
    assert (await world.client.get(f"{path}/units", headers=world.auth("daoli"))).status == 403
    assert "地址不在本院辖区" in (await _duty_log(world, "daoli"))[-1]["text"]

    second = (await _json(await _entrust(world), 201))["entrustment"]
    other = f"/api/entrustments/{second['id']}"
    assert (
        await world.client.post(f"{other}/withdraw", json={"reason": "x"}, headers=world.auth("aihui"))
    ).status == 403
    unassigned = await world.client.put(f"{other}/units", json={"unit_ids": [AIHUI_UNIT]}, headers=world.auth("aihui"))
    assert unassigned.status == 409 and "once it is accepted" in await unassigned.text()
    await _json(await world.client.post(f"{other}/accept", json={}, headers=world.auth("aihui")), 200)
    await _json(await world.client.put(f"{other}/units", json={"unit_ids": [AIHUI_UNIT]}, headers=world.auth("aihui")),
                200)  # fmt: skip
    [task] = await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))
    assert task.status.value == "queued"
    withdrawn = await world.client.post(f"{other}/withdraw", json={"reason": "已自行执结"}, headers=world.auth("daoli"))
    assert (await _json(withdrawn, 200))["entrustment"]["status"] == "withdrawn"
    [task] = await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))  # the unit is called back
    assert task.status.value == "cancelled" and task.note == "执行委托「查封被执行人名下车辆」已撤回"
    # the upper court of the asking court reads it (hierarchy); a court on neither side learns nothing of it
    assert (await _json(await world.client.get(other, headers=world.auth("supervisor")), 200))["sides"] == ["asking"]
    assert (await world.client.get(other, headers=world.auth("daowai"))).status == 403
    assert (await _json(await world.client.get("/api/entrustments?all=true", headers=world.auth("daowai")), 200))[
        "entrustments"
    ] == []

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"to_court_id": "HLJ0102"}, 422, "to_court_id: court HLJ0102 cannot entrust a task to itself"),
        ({"to_court_id": "NOPE"}, 404, "NOPE"),
        ({"deadline": past}, 422, "deadline: it has passed already"),
        ({"deadline": "2026-12-05T18:00:00"}, 422, "deadline"),
        ({"lat": 50.1, "lon": None}, 422, "lat and lon go together"),
        ({"task": ""}, 422, "task"),
        ({"from_court_id": "HLJ1102"}, 403, "outside your jurisdiction"),
    ]
    for fields, status, words in cases:
        answer = await _entrust(world, **fields)
        assert answer.status == status, (fields, await answer.text())
        assert words in await answer.text(), (fields, await answer.text())
    missing = await world.client.get("/api/entrustments/no-such-id", headers=world.auth("daoli"))
    assert missing.status == 404


# Storage, each adapter ---------------------------------------------------------------------------------


async def test_the_stores_keep_the_courts_taking_part_and_move_entrustments_by_compare_and_set(store: Store) -> None:
    await import_courts(store, COURTS_FILE)
    user = await store.add_user(username="u", display_name="u", password_hash="x", role=Role.OPERATOR,
                                court_id=CourtId("HLJ01"))  # fmt: skip
    op = await store.add_operation(Operation("op1", CourtId("HLJ01"), OperationKind.SEARCH, "t", None, user.id, "w",
                                             {}, (), OperationStatus.PLANNED, user.id, 1, None, None))  # fmt: skip
    a, b, c = CourtId("HLJ0102"), CourtId("HLJ0103"), CourtId("HLJ0104")
    assert await store.set_operation_courts(op.id, [a, b]) == [a, b]
    assert await store.set_operation_courts(op.id, [b, c]) == [c]  # only the newly added are told
    assert await store.operation_courts(op.id) == [b, c]
    assert [o.id for o in await store.operations_with_units_of([c], statuses=None)] == [op.id]
    assert await store.operations_with_units_of([a], statuses=None) == []
    assert await store.operations_with_units_of([b], statuses=[OperationStatus.CONCLUDED]) == []

    e = await store.add_entrustment(Entrustment("e1", a, CourtId("HLJ1102"), "t", "addr", None, None, 99, "r",
                                                EntrustmentStatus.REQUESTED, (), user.id, 5, None, None))  # fmt: skip
    accepted = EntrustmentStatus.ACCEPTED
    moved = await store.move_entrustment(e.id, accepted, allowed=MOVES[accepted], at_ms=7)
    assert moved is not None and moved.status is accepted and (moved.decided_ms, moved.ended_ms) == (7, None)
    assert await store.move_entrustment(e.id, accepted, allowed=MOVES[accepted], at_ms=8) is None  # not twice
    units = await store.set_entrustment_units(e.id, [UnitId("HLJ1102-U01")], allowed=[accepted])
    assert units is not None and units.unit_ids == ("HLJ1102-U01",)
    refused = EntrustmentStatus.REFUSED
    assert await store.move_entrustment(e.id, refused, allowed=MOVES[refused], at_ms=9) is None
    done = await store.move_entrustment(e.id, EntrustmentStatus.COMPLETED, allowed=[accepted], at_ms=10)
    assert done is not None and (done.decided_ms, done.ended_ms) == (7, 10)
    assert await store.set_entrustment_units(e.id, [], allowed=[accepted]) is None
    assert [x.id for x in await store.list_entrustments(court_ids=[CourtId("HLJ1102")], statuses=None)] == ["e1"]
    assert await store.list_entrustments(court_ids=[c], statuses=None) == []
    assert await store.list_entrustments(court_ids=None, statuses=[accepted]) == []


# Found in the session review (issue 12's bar): what a court learns once it is off an operation, and what
# an operator learns of other courts' cases and units by naming them -----------------------------------------


async def test_a_court_taken_off_an_operation_learns_nothing_more_of_it_on_its_wall(world: World) -> None:
    plan = {"kind": "search", "title": "联合搜查被执行人住所", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": [DAOLI_UNIT, NANGANG_UNIT]}  # fmt: skip
    op = (await _json(await world.client.post("/api/operations", json=plan, headers=world.auth("operator")), 201))[
        "operation"
    ]
    nangang_wall = await open_screen(world, "nangang", "operations")
    assert [o["id"] for o in (await nangang_wall.next("snapshot", topic="operations.HLJ0103"))["operations"]] == [
        op["id"]
    ]
    units = f"/api/operations/{op['id']}/units"
    await _json(await world.client.put(units, json={"unit_ids": [DAOLI_UNIT]}, headers=world.auth("operator")), 200)
    dropped = await nangang_wall.next("operation", topic="operations.HLJ0103", event="units")
    # enough to drop it from the wall, and nothing of what it has become (its units, target, other courts)
    assert dropped["operation"] == {"id": op["id"], "court_id": "HLJ01", "status": "planned"}
    assert dropped["courts"] == ["HLJ01"]


async def test_naming_another_courts_case_or_unit_in_an_operation_gets_the_unknowns_answer(world: World) -> None:
    other_case = await world.store.add_case(
        case_number="(2026)黑0103执1号", court_id=CourtId("HLJ0103"), title="t", created_by=None, created_ms=1
    )
    plan = {"kind": "search", "title": "搜查", "onsite_commander": "王警官", "target": TARGET}
    for case_id in (other_case.id, 987_654):  # another court's case, and one that does not exist
        refused = await world.client.post("/api/operations", json=plan | {"case_id": case_id},
                                          headers=world.auth("daoli"))  # fmt: skip
        assert refused.status == 422
        assert (await refused.json())["error"]["message"] == f"case_id: case {case_id} is not a case of court HLJ0102"
    for unit_id in (NANGANG_UNIT, "HLJ0103-U99"):  # a sibling court's unit, and one that does not exist
        refused = await world.client.post("/api/operations", json=plan | {"unit_ids": [unit_id]},
                                          headers=world.auth("daoli"))  # fmt: skip
        assert refused.status == 422
        assert (await refused.json())["error"]["message"] == (
            f"unit_ids: unit {unit_id} is not of court HLJ0102 or a court below it"
        )


async def test_the_asking_court_follows_a_unit_only_while_its_entrusted_task_is_live(world: World) -> None:
    """Found in the session review: once the receiving court called its unit off the entrusted task (改派),
    the asking court still followed the unit's position and state, now at work for its own court."""
    path = f"/api/entrustments/{(await _json(await _entrust(world), 201))['entrustment']['id']}"
    await _json(await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui")), 200)
    await _json(await world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]}, headers=world.auth("aihui")),
                200)  # fmt: skip
    sent = await world.client.post("/api/telemetry/batch", json={"positions": [fix(1, lat=50.2450, lon=127.53)]},
                                   headers={"Authorization": f"Bearer {world.tokens[AIHUI_UNIT]}"})  # fmt: skip
    assert sent.status == 200, await sent.text()
    [followed] = (await _json(await world.client.get(f"{path}/units", headers=world.auth("daoli")), 200))["units"]
    assert followed["position"]["lat"] == 50.2450 and followed["task"]["status"] == "queued"
    [task] = await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))
    await _json(await world.client.post(f"/api/tasks/{task.id}/cancel", json={"note": "改派"},
                                        headers=world.auth("aihui")), 200)  # fmt: skip
    [followed] = (await _json(await world.client.get(f"{path}/units", headers=world.auth("daoli")), 200))["units"]
    assert (followed["task"]["status"], followed["position"], followed["status"]) == ("cancelled", None, None)
    [own] = (await _json(await world.client.get(f"{path}/units", headers=world.auth("aihui")), 200))["units"]
    assert own["position"]["lat"] == 50.2450  # the receiving court still sees its own unit


async def test_two_operators_assigning_the_same_unit_at_once_send_it_once(world: World) -> None:
    """Found in the session review: each PUT compared the new units with those it had read before writing, so two
    at once both found the unit new and sent it two go-to tasks (nothing runs twice)."""
    path = f"/api/entrustments/{(await _json(await _entrust(world), 201))['entrustment']['id']}"
    await _json(await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui")), 200)
    answers = await asyncio.gather(*(world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]},
                                                      headers=world.auth("aihui")) for _ in range(4)))  # fmt: skip
    assert all(a.status == 200 for a in answers), [a.status for a in answers]
    assert len(await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))) == 1


async def test_changing_an_operations_units_under_way_sends_only_the_new_units(world: World) -> None:
    """Found in the session review: every change of units while under way sent every unit a go-to task again
    (a unit already on its way got one more per change, also when the same list was sent twice at once)."""
    plan = {"kind": "search", "title": "搜查", "court_id": "HLJ01", "onsite_commander": "王警官", "target": TARGET,
            "unit_ids": [NANGANG_UNIT]}  # fmt: skip
    op = (await _json(await world.client.post("/api/operations", json=plan, headers=world.auth("operator")), 201))[
        "operation"
    ]
    await _json(await world.client.post(f"/api/operations/{op['id']}/start", json={},
                                        headers=world.auth("operator")), 200)  # fmt: skip
    units = f"/api/operations/{op['id']}/units"
    both = {"unit_ids": [NANGANG_UNIT, DAOLI_UNIT]}
    answers = await asyncio.gather(*(world.client.put(units, json=both, headers=world.auth("operator"))
                                     for _ in range(3)))  # fmt: skip
    assert all(a.status == 200 for a in answers), [a.status for a in answers]
    for unit_id in (NANGANG_UNIT, DAOLI_UNIT):
        assert len(await world.store.list_tasks(unit_id=UnitId(unit_id))) == 1, unit_id
