"""Duty (执行值守): the roster, sign-in and the duty log; and the console's statistics, including the share of
today's asset queries that gave complete feedback within the deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core.errors import ValidationFailed
from core.ids import CourtId, QueryId
from courts.duty_day import bounds, today
from persistence.models import Role
from persistence.port import Store
from persistence.query_models import JobOutcome, JobStatus, Query, submit_audit
from tests.conftest import World
from tests.test_live_tracking import fix, open_unit, send
from tests.test_query_store import _case, _job


async def _uid(world: World, username: str) -> int:
    user = await world.store.find_user(username)
    assert user is not None
    return int(user.id)


def test_the_duty_day_is_chinese_standard_time() -> None:
    # 2026-11-22 16:30 UTC is already the 23rd in Harbin
    assert today(1_795_365_000_000) == "2026-11-23"
    start, end = bounds("2026-11-23")
    midnight_in_harbin = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # 00:00 on the 23rd, UTC+8
    assert start == midnight_in_harbin.timestamp() * 1000 and end - start == 86_400_000
    for bad in ("2026-13-01", "23/11/2026", "2026-02-30", ""):
        with pytest.raises(ValidationFailed):
            bounds(bad)


async def test_roster_sign_in_and_refusals(world: World) -> None:
    await world.add_user("technician", Role.OPERATOR, "HLJ01")
    day = today(int(time.time() * 1000))
    officer, technician = await _uid(world, "operator"), await _uid(world, "technician")
    put = await world.client.put(f"/api/duty/HLJ01/{day}", json={"officer_id": officer, "technician_id": technician},
                                 headers=world.auth("supervisor"))  # fmt: skip
    assert put.status == 200, await put.text()
    roster = (await (await world.client.get("/api/duty", headers=world.auth("operator"))).json())["roster"]
    assert [(r["post"], r["user_id"], r["signed_in_ms"]) for r in roster] == [
        ("officer", officer, None), ("technician", technician, None)]  # fmt: skip

    signed = await world.client.post("/api/duty/sign-in", headers=world.auth("operator"))
    assert signed.status == 200 and (await signed.json())["roster"][0]["signed_in_ms"] is not None
    nobody = await world.client.post("/api/duty/sign-in", headers=world.auth("admin"))
    assert nobody.status == 409 and "holds no duty post" in (await nobody.json())["error"]["message"]

    judge = await _uid(world, "judge")
    wrong = await world.client.put(f"/api/duty/HLJ01/{day}", json={"officer_id": judge, "technician_id": technician},
                                   headers=world.auth("supervisor"))  # fmt: skip
    assert wrong.status == 422 and "duty posts are for the centre's staff" in (await wrong.json())["error"]["message"]
    bad_day = await world.client.put("/api/duty/HLJ01/2026-02-30", json={"officer_id": officer,
                                     "technician_id": technician}, headers=world.auth("supervisor"))  # fmt: skip
    assert bad_day.status == 422
    by_operator = await world.client.put(f"/api/duty/HLJ01/{day}", json={"officer_id": officer,
                                         "technician_id": technician}, headers=world.auth("operator"))  # fmt: skip
    assert by_operator.status == 403
    # reassigning a post clears its sign-in; keeping the same person keeps it
    again = await world.client.put(f"/api/duty/HLJ01/{day}", json={"officer_id": officer, "technician_id": officer},
                                   headers=world.auth("supervisor"))  # fmt: skip
    posts = {r["post"]: r for r in (await again.json())["roster"]}
    assert posts["officer"]["signed_in_ms"] is not None and posts["technician"]["signed_in_ms"] is None


async def test_the_duty_log_tells_the_day_in_order(world: World) -> None:
    note = await world.client.post("/api/duty/notes", json={"text": "接班，系统正常"}, headers=world.auth("operator"))
    assert note.status == 201
    unit = await open_unit(world)
    await send(unit, fix(1, sos=True))
    [alarm] = await world.store.list_alarms(court_ids=None, live_only=True)
    await world.client.post(f"/api/alarms/{alarm.id}/acknowledge", json={}, headers=world.auth("operator"))
    task = await world.client.post("/api/units/HLJ0102-U01/tasks", json={"kind": "call_back", "title": "回电"},
                                   headers=world.auth("operator"))  # fmt: skip
    assert task.status == 201
    log = await (await world.client.get("/api/duty/log", headers=world.auth("supervisor"))).json()
    kinds = [e["kind"] for e in log["entries"]]
    assert kinds == ["note", "alarm_raised", "alarm_acknowledged", "task_sent"], kinds
    assert log["entries"][0]["text"] == "接班，系统正常" and log["entries"][2]["user_id"] == await _uid(
        world, "operator"
    )
    bad = await world.client.get("/api/duty/log?day=yesterday", headers=world.auth("operator"))
    assert bad.status == 422
    far = await world.client.post("/api/duty/notes", json={"text": "x", "court_id": "NOPE"},
                                  headers=world.auth("operator"))  # fmt: skip
    assert far.status == 404


async def test_console_statistics(world: World) -> None:
    unit = await open_unit(world)
    await send(unit, fix(1, sos=True))
    await world.client.post("/api/units/HLJ0102-U01/tasks", json={"kind": "call_back", "title": "回电"},
                            headers=world.auth("operator"))  # fmt: skip
    body = await (await world.client.get("/api/stats", headers=world.auth("operator"))).json()
    [court] = [c for c in body["courts"] if c["court_id"] == "HLJ0102"]
    assert (court["units"], court["sos"], court["alarms_open"], court["tasks_under_way"]) == (1, 1, 1, 1)
    assert court["queries_today"] == 0 and court["queries_on_time_share"] is None
    assert body["total"]["units"] == 1


async def test_query_outcomes_count_timed_out_agencies(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    now = int(time.time() * 1000)
    for query_id, late in (("q-on-time", False), ("q-late", True), ("q-running", False)):
        query = Query(QueryId(query_id), case_id, judge, "r", now, now + 30_000)
        jobs = [_job(query_id, f"{query_id}-a", party, "bank-a"), _job(query_id, f"{query_id}-b", party, "bank-b")]
        await store.add_query(query, jobs, audit=submit_audit(query, jobs))
        if query_id == "q-running":
            continue
        await store.finish_jobs([JobOutcome(f"{query_id}-a", JobStatus.ANSWERED, now + 1)])  # type: ignore[arg-type]
        if not late:
            await store.finish_jobs([JobOutcome(f"{query_id}-b", JobStatus.NO_ASSETS, now + 2)])  # type: ignore[arg-type]
        await store.complete_query(QueryId(query_id), now + 30_000)
    outcomes = {o.query_id: o for o in await store.query_outcomes([CourtId("HLJ0102")], now - 1)}
    assert {k: (o.on_time, o.timed_out_jobs) for k, o in outcomes.items()} == {
        "q-on-time": (True, 0), "q-late": (False, 1), "q-running": (False, 0)}  # fmt: skip
    assert await store.query_outcomes([CourtId("HLJ0103")], now - 1) == []
    assert len(await store.query_outcomes(None, now + 1)) == 0


async def test_days_a_calendar_cannot_hold_are_refused_not_crashed_on(world: World) -> None:
    """Year 1 in Harbin begins in year 0 UTC and 9999-12-31 ends in year 10000: neither exists for datetime,
    which raised OverflowError (500). They are outside the days a duty roster can name."""
    officer = await _uid(world, "operator")
    for day in ("0001-01-01", "0001-01-02", "1969-12-31", "9999-12-31"):
        for method, path, payload in [
            ("GET", f"/api/duty?day={day}", None),
            ("GET", f"/api/duty/log?day={day}", None),
            ("PUT", f"/api/duty/HLJ01/{day}", {"officer_id": officer, "technician_id": officer}),
        ]:
            response = await world.client.request(method, path, json=payload, headers=world.auth("supervisor"))
            assert response.status == 422, (path, await response.text())
            message = (await response.json())["error"]["message"]
            assert message == f"day must be from 1970-01-01 to 9999-12-30, got {day}"
    for day in ("1970-01-01", "9999-12-30"):
        assert (await world.client.get(f"/api/duty/log?day={day}", headers=world.auth("supervisor"))).status == 200


async def test_duty_is_given_only_to_the_courts_own_staff(world: World) -> None:
    day = today(int(time.time() * 1000))
    await world.add_user("daoli_operator", Role.OPERATOR, "HLJ0102")  # a court below: not HLJ01's staff
    own, below = await _uid(world, "operator"), await _uid(world, "daoli_operator")
    for officer, technician, field, user in ((below, own, "officer_id", below), (own, 999_999, "technician_id",
                                                                                  999_999)):  # fmt: skip
        refused = await world.client.put(f"/api/duty/HLJ01/{day}", json={"officer_id": officer,
                                         "technician_id": technician}, headers=world.auth("admin"))  # fmt: skip
        assert refused.status == 422, await refused.text()
        assert (await refused.json())["error"]["message"] == f"{field}: user {user} is not on the staff of court HLJ01"
    assert await world.store.duty_roster(None, day) == []  # nothing of a refused roster is kept
    there = await world.client.put(f"/api/duty/HLJ0102/{day}", json={"officer_id": below, "technician_id": below},
                                   headers=world.auth("supervisor"))  # fmt: skip
    assert there.status == 200, await there.text()
