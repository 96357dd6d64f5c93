"""Entrustments live on both courts' screens (执行委托): every step reaches the asking and the receiving centre
over the screen socket; while the task runs the asking court follows the assigned unit's positions, and no
other unit of the receiving court; once it ends, nothing more. An entrustment past its deadline raises one
执行委托超期 alarm on each court's wall, from the leader's sweep, fenced and audited. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alarms.models import AlarmKind
from command_center.keys import ENTRUSTMENTS
from config.settings import EntrustmentSettings, StoreSettings
from core.errors import FencedOut
from core.fencing import Fence
from core.ids import CourtId, UnitId
from entrustments.models import Entrustment, EntrustmentStatus
from persistence.port import Store
from tests.conftest import POSTGRES_DSN, AppFactory, World, fresh_pg_schema
from tests.test_cross_court import AIHUI_OTHER, AIHUI_UNIT, REQUEST, _json, _people_and_units
from tests.test_live_tracking import Screen, fix, open_screen

FAST_SWEEP = EntrustmentSettings(overdue_sweep_seconds=0.1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    """Operators of four basic courts in two cities, units in three; the overdue sweep every 0.1 s."""
    if request.param == "sqlite":
        built = await make_world(entrustments=FAST_SWEEP)
        await _people_and_units(built)
        yield built
        return
    async with fresh_pg_schema() as schema:
        built = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=schema, entrustments=FAST_SWEEP)
        await _people_and_units(built)
        yield built


async def _entrust(world: World, *, seconds: float = 24 * 3600) -> dict[str, Any]:
    deadline = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    answer = await world.client.post("/api/entrustments", json=REQUEST | {"deadline": deadline},
                                     headers=world.auth("daoli"))  # fmt: skip
    entrustment: dict[str, Any] = (await _json(answer, 201))["entrustment"]
    return entrustment


async def _report(world: World, unit_id: str, seq: int, lat: float) -> None:
    sent = await world.client.post("/api/telemetry/batch", json={"positions": [fix(seq, lat=lat, lon=127.53)]},
                                   headers={"Authorization": f"Bearer {world.tokens[unit_id]}"})  # fmt: skip
    assert sent.status == 200, await sent.text()


async def _step(screen: Screen, court: str, event: str) -> dict[str, Any]:
    return await screen.next("entrustment", topic=f"entrustments.{court}", event=event)


async def _unit_seen(screen: Screen, topic: str, unit_id: str, lat: float) -> None:
    """Wait until a frame on ``topic`` shows the unit at this latitude."""
    while True:
        frame = await screen.next("frame", topic=topic)
        if any(u["unit_id"] == unit_id and (u["position"] or {}).get("lat") == lat for u in frame["units"]):
            return


def _mentions(messages: list[dict[str, Any]], what: str) -> bool:
    """Whether any unit picture received (snapshot or frame) mentions this (a unit id, a coordinate)."""
    return what in repr([m for m in messages if m["type"] in ("snapshot", "frame")])


async def test_each_step_reaches_both_courts_and_the_asking_court_follows_only_the_assigned_unit(
    world: World,
) -> None:
    asking = await open_screen(world, "daoli", "entrustments")
    receiving = await open_screen(world, "aihui", "entrustments", "units")
    bystander = await open_screen(world, "daowai", "entrustments")
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        assert (await screen.next("snapshot", topic=f"entrustments.{court}"))["entrustments"] == []

    e = await _entrust(world)
    path = f"/api/entrustments/{e['id']}"
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        told = await _step(screen, court, "requested")
        assert told["entrustment"]["id"] == e["id"] and told["entrustment"]["status"] == "requested"
        assert told["text"] == REQUEST["reason"]

    # the asking court cannot follow units before any work is entrusted to them, nor another court's unit
    await asking.ws.send_json({"type": "subscribe", "topics": [f"unit:{AIHUI_OTHER}"]})
    assert (await asking.next("error"))["code"] == "forbidden"
    await bystander.ws.send_json({"type": "subscribe", "topics": [f"entrusted:{e['id']}"]})
    assert "neither asked by nor of your courts" in (await bystander.next("error"))["message"]

    await _json(await world.client.post(f"{path}/accept", json={"note": "已安排"}, headers=world.auth("aihui")), 200)
    await _json(await world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]},
                                       headers=world.auth("aihui")), 200)  # fmt: skip
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        assert (await _step(screen, court, "accepted"))["entrustment"]["status"] == "accepted"
        assert (await _step(screen, court, "units"))["entrustment"]["unit_ids"] == [AIHUI_UNIT]

    following = f"entrusted:{e['id']}"
    await asking.ws.send_json({"type": "subscribe", "topics": [following]})
    assert (await asking.next("subscribed"))["topics"] == [following]
    snapshot = await asking.next("snapshot", topic=following)
    assert [u["unit_id"] for u in snapshot["units"]] == [AIHUI_UNIT]

    # the other unit moves first: its own court sees it; the asking court, following the same court's topic
    # filtered, must not. Then the assigned unit moves: the asking court sees that.
    await _report(world, AIHUI_OTHER, 1, 50.3)
    await _unit_seen(receiving, "units.HLJ1102", AIHUI_OTHER, 50.3)
    await _report(world, AIHUI_UNIT, 1, 50.2450)
    await _unit_seen(asking, following, AIHUI_UNIT, 50.2450)
    assert not _mentions(asking.messages, AIHUI_OTHER)

    await _json(await world.client.post(f"{path}/reports", json={"text": "已到达现场"}, headers=world.auth("aihui")),
                201)  # fmt: skip
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        assert (await _step(screen, court, "report"))["text"] == "已到达现场"
    await _json(await world.client.post(f"{path}/complete", json={"reason": "车辆已查封"},
                                        headers=world.auth("aihui")), 200)  # fmt: skip
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        assert (await _step(screen, court, "completed"))["entrustment"]["status"] == "completed"
    ended = await asking.next("entrusted", topic=following, status="completed")
    assert ended["unit_ids"] == []

    # after the end the assigned unit's positions no longer reach the asking court
    seen = len(asking.messages)
    await _report(world, AIHUI_UNIT, 2, 50.2460)
    await _unit_seen(receiving, "units.HLJ1102", AIHUI_UNIT, 50.2460)
    await asking.ws.send_json({"type": "subscribe", "topics": [following]})
    assert "only while it runs" in (await asking.next("error"))["message"]
    assert not _mentions(asking.messages[seen:], "50.246")
    assert not any(m["type"] == "entrustment" for m in bystander.messages)  # 道外 is on neither side


async def test_a_unit_called_off_the_entrusted_task_drops_out_of_the_asking_courts_view(world: World) -> None:
    e = await _entrust(world)
    path = f"/api/entrustments/{e['id']}"
    await _json(await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui")), 200)
    await _json(await world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]},
                                       headers=world.auth("aihui")), 200)  # fmt: skip
    following = f"entrusted:{e['id']}"
    asking = await open_screen(world, "daoli", following)
    receiving = await open_screen(world, "aihui", "units")
    await _report(world, AIHUI_UNIT, 1, 50.2450)
    await _unit_seen(asking, following, AIHUI_UNIT, 50.2450)
    [task] = await world.store.list_tasks(unit_id=UnitId(AIHUI_UNIT))
    await _json(await world.client.post(f"/api/tasks/{task.id}/cancel", json={"note": "改派"},
                                        headers=world.auth("aihui")), 200)  # fmt: skip
    assert (await asking.next("entrusted", topic=following))["unit_ids"] == []
    seen = len(asking.messages)
    await _report(world, AIHUI_UNIT, 2, 50.2470)
    await _unit_seen(receiving, "units.HLJ1102", AIHUI_UNIT, 50.2470)
    await asking.ws.send_json({"type": "ping"})
    await asking.next("pong")
    assert not _mentions(asking.messages[seen:], "50.247")


async def test_an_entrustment_past_its_deadline_raises_one_alarm_on_each_courts_wall(world: World) -> None:
    asking = await open_screen(world, "daoli", "alarms", "entrustments")
    receiving = await open_screen(world, "aihui", "alarms")
    e = await _entrust(world, seconds=1.0)
    path = f"/api/entrustments/{e['id']}"
    await _json(await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui")), 200)

    raised = {}
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        told = await screen.next("alarm", within=15.0, topic=f"alarms.{court}", event="raised")
        assert told["alarm"]["kind"] == "entrustment_overdue" and told["alarm"]["court_id"] == court
        assert told["alarm"]["details"]["entrustment_id"] == e["id"]
        raised[court] = told["alarm"]
    overdue = await _step(asking, "HLJ0102", "overdue")
    assert overdue["entrustment"]["overdue_ms"] is not None

    # once: sweeps after this find nothing to mark, and each court holds one alarm for it
    assert await world.client.app[ENTRUSTMENTS].sweep_overdue() == 0
    for court in ("HLJ0102", "HLJ1102"):
        alarms = await world.store.list_alarms(court_ids=[CourtId(court)], live_only=True)
        assert [(a.kind, a.id) for a in alarms] == [(AlarmKind.ENTRUSTMENT_OVERDUE, raised[court]["id"])]
    entries = [a for a in await world.store.audit_entries() if a.action == "entrustment.overdue"]
    assert [(a.actor_id, a.details["entrustment_id"]) for a in entries] == [(None, e["id"])]
    timeline = (await _json(await world.client.get(path, headers=world.auth("daoli")), 200))["entrustment"]["timeline"]
    assert [t["kind"] for t in timeline] == ["requested", "accepted", "overdue"]
    for who, court in (("daoli", "HLJ0102"), ("aihui", "HLJ1102")):  # in both courts' duty logs, as the system's
        log = (await _json(await world.client.get("/api/duty/log", headers=world.auth(who)), 200))["entries"]
        notes = [n for n in log if n["kind"] == "note" and n["court_id"] == court and "已超期" in n["text"]]
        assert [(n["user_id"], n["text"]) for n in notes] == [
            (None, f"执行委托「{e['task']}」（HLJ0102 → HLJ1102）已超期：已超过委托期限，尚未办结")
        ], log

    # the task is done at last: both courts' alarms resolve themselves
    await _json(await world.client.post(f"{path}/complete", json={"reason": "已办结"}, headers=world.auth("aihui")),
                200)  # fmt: skip
    for screen, court in ((asking, "HLJ0102"), (receiving, "HLJ1102")):
        cleared = await screen.next("alarm", topic=f"alarms.{court}", event="cleared")
        assert cleared["alarm"]["state"] == "resolved"


async def test_a_stale_leader_cannot_mark_an_entrustment_overdue(store: Store) -> None:
    """The mark is fenced with the leader's grant: a process paused past its lease is refused, the newer
    holder's mark counts once, and a live entrustment within its deadline is not marked at all."""
    from command_center.bootstrap import import_courts
    from persistence.models import Role
    from tests.conftest import COURTS_FILE

    await import_courts(store, COURTS_FILE)
    user = await store.add_user(username="u", display_name="u", password_hash="x", role=Role.OPERATOR,
                                court_id=CourtId("HLJ0102"))  # fmt: skip
    draft = Entrustment("late", CourtId("HLJ0102"), CourtId("HLJ1102"), "t", "a", None, None, 1_000, "r",
                        EntrustmentStatus.ACCEPTED, (), user.id, 1, 2, None)  # fmt: skip
    await store.add_entrustment(draft)
    await store.add_entrustment(draft.__class__(**{**_fields(draft), "id": "fresh", "deadline_ms": 10**13}))
    assert [e.id for e in await store.overdue_entrustments(5_000)] == ["late"]
    newer = await store.mark_entrustment_overdue("late", at_ms=5_000, fence=Fence("leader", 9))
    assert newer is not None and newer.overdue_ms == 5_000
    with pytest.raises(FencedOut):
        await store.mark_entrustment_overdue("late", at_ms=5_001, fence=Fence("leader", 5))
    assert await store.mark_entrustment_overdue("late", at_ms=5_002, fence=Fence("leader", 9)) is None  # once
    assert await store.mark_entrustment_overdue("fresh", at_ms=5_002, fence=Fence("leader", 9)) is None
    assert await store.overdue_entrustments(5_003) == []


def _fields(e: Entrustment) -> dict[str, Any]:
    return {name: getattr(e, name) for name in e.__dataclass_fields__}


async def test_the_asking_court_never_gets_positions_from_before_the_unit_was_assigned(world: World) -> None:
    """The entrusted feed follows the receiving court's topic, whose history holds the unit's track from before
    the assignment: a screen asking to resume from the topic's start gets a snapshot (the unit where it is
    now), never those earlier positions."""
    receiving = await open_screen(world, "aihui", "units")
    await _report(world, AIHUI_UNIT, 1, 50.2111)
    await _unit_seen(receiving, "units.HLJ1102", AIHUI_UNIT, 50.2111)
    await _report(world, AIHUI_UNIT, 2, 50.2222)
    await _unit_seen(receiving, "units.HLJ1102", AIHUI_UNIT, 50.2222)
    e = await _entrust(world)
    path = f"/api/entrustments/{e['id']}"
    await _json(await world.client.post(f"{path}/accept", json={}, headers=world.auth("aihui")), 200)
    await _json(await world.client.put(f"{path}/units", json={"unit_ids": [AIHUI_UNIT]},
                                       headers=world.auth("aihui")), 200)  # fmt: skip
    following = f"entrusted:{e['id']}"
    asking = await open_screen(world, "daoli", following, resume={following: 0})
    await _report(world, AIHUI_UNIT, 3, 50.2450)
    await _unit_seen(asking, following, AIHUI_UNIT, 50.2450)
    assert not _mentions(asking.messages, "50.2111")
    first = next(m for m in asking.messages if m.get("topic") == following)
    assert first["type"] == "snapshot" and [u["unit_id"] for u in first["units"]] == [AIHUI_UNIT]
