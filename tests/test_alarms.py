"""Alarms with a lifecycle: one live alarm per condition, operators' steps with who and when, every change on
the court's screens at once, and nothing lost across a restart."""

from __future__ import annotations

import pytest

from alarms.models import AlarmAction, AlarmKind, AlarmState
from core.errors import Conflict, NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.models import Role, UnitKind
from persistence.port import Store
from tests.conftest import AppFactory, World
from tests.test_live_tracking import fix, open_screen, open_unit, send

UNIT = "HLJ0102-U01"


async def _unit_and_user(store: Store) -> UserId:
    from command_center.bootstrap import import_courts
    from tests.conftest import COURTS_FILE

    await import_courts(store, COURTS_FILE)
    await store.add_unit(unit_id=UnitId(UNIT), name="道里一号", kind=UnitKind.BODY_CAMERA,
                         court_id=CourtId("HLJ0102"), secret_hash="x" * 64)  # fmt: skip
    user = await store.add_user(username="op", display_name="值班员", password_hash="x", role=Role.OPERATOR,
                                court_id=CourtId("HLJ01"))  # fmt: skip
    return user.id


async def test_one_live_alarm_per_condition_and_steps_are_compare_and_set(store: Store) -> None:
    operator = await _unit_and_user(store)
    court = CourtId("HLJ0102")
    sos, created = await store.raise_alarm(AlarmKind.SOS, UNIT, court_id=court, unit_id=UnitId(UNIT),
                                           details={"unit_name": "道里一号"}, at_ms=1)  # fmt: skip
    assert created and sos.state is AlarmState.OPEN and sos.active and sos.details == {"unit_name": "道里一号"}
    same, changed = await store.raise_alarm(AlarmKind.SOS, UNIT, court_id=court, unit_id=None, details={}, at_ms=2)
    assert (same.id, changed, same.repeats) == (sos.id, False, 0)  # still the one live alarm, nothing new
    cleared = await store.clear_alarm(AlarmKind.SOS, UNIT, at_ms=3, resolve=False)
    assert cleared is not None and not cleared.active and cleared.state is AlarmState.OPEN and cleared.cleared_ms == 3
    assert await store.clear_alarm(AlarmKind.SOS, UNIT, at_ms=4, resolve=False) is None  # already inactive
    back, changed = await store.raise_alarm(AlarmKind.SOS, UNIT, court_id=court, unit_id=None, details={}, at_ms=5)
    assert (back.id, changed, back.repeats, back.active) == (sos.id, True, 1, True)

    acked = await store.act_on_alarm(sos.id, AlarmAction.ACKNOWLEDGE, user_id=operator, at_ms=6, note=None)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_ms) == (AlarmState.ACKNOWLEDGED, operator, 6)
    with pytest.raises(Conflict, match="cannot acknowledge an alarm that is acknowledged"):
        await store.act_on_alarm(sos.id, AlarmAction.ACKNOWLEDGE, user_id=operator, at_ms=7, note=None)
    done = await store.act_on_alarm(sos.id, AlarmAction.RESOLVE, user_id=operator, at_ms=8, note="已联系民警，安全")
    assert (done.state, done.closed_by, done.closed_ms, done.note) == (
        AlarmState.RESOLVED,
        operator,
        8,
        "已联系民警，安全",
    )
    with pytest.raises(Conflict, match="cannot false_alarm an alarm that is resolved"):
        await store.act_on_alarm(sos.id, AlarmAction.FALSE_ALARM, user_id=operator, at_ms=9, note=None)
    with pytest.raises(NotFound):
        await store.act_on_alarm(999, AlarmAction.RESOLVE, user_id=operator, at_ms=9, note=None)

    # closed: the same condition now opens a new alarm
    fresh, created = await store.raise_alarm(AlarmKind.SOS, UNIT, court_id=court, unit_id=None, details={}, at_ms=10)
    assert created and fresh.id != sos.id
    offline, _ = await store.raise_alarm(AlarmKind.OFFLINE, UNIT, court_id=court, unit_id=None, details={}, at_ms=11)
    auto = await store.clear_alarm(AlarmKind.OFFLINE, UNIT, at_ms=12, resolve=True)
    assert auto is not None and auto.state is AlarmState.RESOLVED and auto.closed_by is None and auto.closed_ms == 12

    live = await store.list_alarms(court_ids=[court], live_only=True)
    assert [a.id for a in live] == [fresh.id]
    everything = await store.list_alarms(court_ids=None, live_only=False)
    assert [a.id for a in everything] == [offline.id, fresh.id, sos.id]  # newest first
    assert await store.list_alarms(court_ids=[CourtId("HLJ0103")], live_only=False) == []
    assert await store.get_alarm(sos.id) == done


async def test_an_operator_handles_an_sos_from_the_wall(world: World) -> None:
    screen = await open_screen(world)
    unit = await open_unit(world)
    await send(unit, fix(1, sos=True))
    raised = (await screen.next("alarm", event="raised"))["alarm"]
    listed = await (await world.client.get("/api/alarms", headers=world.auth("operator"))).json()
    assert [a["id"] for a in listed["alarms"]] == [raised["id"]]

    judge = await world.client.post(f"/api/alarms/{raised['id']}/acknowledge", headers=world.auth("judge"))
    assert judge.status == 403
    ack = await world.client.post(f"/api/alarms/{raised['id']}/acknowledge", json={}, headers=world.auth("operator"))
    assert ack.status == 200, await ack.text()
    seen = (await screen.next("alarm", event="acknowledge"))["alarm"]
    assert seen["state"] == "acknowledged" and seen["acknowledged_by"] is not None
    again = await world.client.post(f"/api/alarms/{raised['id']}/acknowledge", json={}, headers=world.auth("operator"))
    assert again.status == 409 and "acknowledged" in (await again.json())["error"]["message"]

    # resolving an SOS whose unit still calls for help also clears the unit's SOS: one action
    done = await world.client.post(f"/api/alarms/{raised['id']}/resolve", json={"note": "民警已安全撤离"},
                                   headers=world.auth("operator"))  # fmt: skip
    body = await done.json()
    assert done.status == 200 and body["alarm"]["state"] == "resolved" and body["alarm"]["note"] == "民警已安全撤离"
    await screen.unit_update(UNIT, lambda v: v["status"] == "available")
    assert (await screen.next("alarm", event="resolve"))["alarm"]["state"] == "resolved"
    live = await (await world.client.get("/api/alarms", headers=world.auth("operator"))).json()
    assert live["alarms"] == []
    history = await (await world.client.get("/api/alarms?all=true", headers=world.auth("operator"))).json()
    assert [a["state"] for a in history["alarms"]] == ["resolved"]


async def test_bad_alarm_requests_are_refused_precisely(world: World) -> None:
    headers = world.auth("operator")
    for path, status, words in [
        ("/api/alarms/abc/resolve", 422, "alarm id must be a positive integer"),
        ("/api/alarms/%C2%B9/resolve", 422, "alarm id must be a positive integer"),  # '¹' is a digit to isdigit()
        ("/api/alarms/4242/resolve", 404, "alarm 4242 does not exist"),
    ]:
        response = await world.client.post(path, json={}, headers=headers)
        assert response.status == status and words in (await response.json())["error"]["message"], path
    for query, words in [("all=maybe", "all must be true or false"), ("limit=0", "limit must be an integer")]:
        response = await world.client.get(f"/api/alarms?{query}", headers=headers)
        assert response.status == 422 and words in (await response.json())["error"]["message"]
    unknown = await world.client.post("/api/alarms/1/resolve", json={"nothing": 1}, headers=headers)
    assert unknown.status == 422


async def test_another_courts_operator_cannot_touch_the_alarm(world: World) -> None:
    await world.add_user("songbei", Role.OPERATOR, "HLJ0109")
    token = await world.login("songbei")
    unit = await open_unit(world)
    await send(unit, fix(1, sos=True))
    [alarm] = await world.store.list_alarms(court_ids=None, live_only=True)
    response = await world.client.post(f"/api/alarms/{alarm.id}/resolve", json={},
                                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status == 403
    mine = await world.client.get("/api/alarms", headers={"Authorization": f"Bearer {token}"})
    assert (await mine.json())["alarms"] == []


async def test_low_battery_raises_once_and_clears_only_when_charged(world: World) -> None:
    screen = await open_screen(world)
    unit = await open_unit(world)
    for seq, battery in enumerate([40, 12, 11, 14, 17], start=1):  # wobbles around the 15 % threshold
        await send(unit, fix(seq) | {"battery_pct": battery})
    raised = await screen.next("alarm", event="raised")
    assert raised["alarm"]["kind"] == "low_battery" and raised["alarm"]["details"]["battery_pct"] == 12
    await send(unit, fix(6) | {"battery_pct": 21})
    cleared = await screen.next("alarm", event="cleared")
    assert cleared["alarm"]["id"] == raised["alarm"]["id"] and cleared["alarm"]["state"] == "resolved"
    kinds = [m["alarm"]["kind"] for m in screen.messages if m["type"] == "alarm"]
    assert kinds == ["low_battery", "low_battery"]  # one raise, one clear: no flapping


async def test_live_alarms_survive_a_restart(make_world: AppFactory) -> None:
    first = await make_world()
    unit = await open_unit(first)
    await send(unit, fix(1, sos=True))
    [alarm] = await first.store.list_alarms(court_ids=None, live_only=True)
    await unit.close()
    await first.client.close()  # the server stops; the store file stays

    second = await make_world()  # same database file (tmp_path), a new process's worth of app
    screen = await open_screen(second)
    snapshot = await screen.next("snapshot", topic="alarms.HLJ0102")
    assert [a["id"] for a in snapshot["alarms"]] == [alarm.id] and snapshot["alarms"][0]["kind"] == "sos"
