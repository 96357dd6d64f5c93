"""Enforcement operations (执行行动): planned, started (every unit is sent to the target over its socket), noted,
concluded; the wall's screens see them; bad requests are refused precisely."""

from __future__ import annotations

from typing import Any

from persistence.models import Role
from tests.conftest import World
from tests.test_live_tracking import open_screen, open_unit
from tests.test_tasks import _next

UNIT = "HLJ0102-U01"
TARGET = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}


async def _plan(world: World, **fields: Any) -> Any:
    payload = {"kind": "seizure", "title": "查封被执行人车辆", "court_id": "HLJ0102", "onsite_commander": "李警官",
               "target": TARGET, "unit_ids": [UNIT]} | fields  # fmt: skip
    return await world.client.post("/api/operations", json=payload, headers=world.auth("operator"))


async def test_an_operation_runs_from_plan_to_conclusion(world: World) -> None:
    screen = await open_screen(world, "operator", "operations")
    snapshot = await screen.next("snapshot", topic="operations.HLJ0102")
    assert snapshot["operations"] == []
    unit = await open_unit(world)
    created = await _plan(world)
    assert created.status == 201, await created.text()
    op = (await created.json())["operation"]
    assert op["status"] == "planned" and op["unit_ids"] == [UNIT] and op["target"]["radius_m"] == 150
    assert [e["kind"] for e in op["timeline"]] == ["created"]
    assert (await screen.next("operation"))["operation"]["status"] == "planned"

    started = await world.client.post(f"/api/operations/{op['id']}/start", json={}, headers=world.auth("operator"))
    assert started.status == 200 and (await started.json())["operation"]["started_ms"] is not None
    seen = await screen.next("operation", event="under_way")
    assert seen["operation"]["status"] == "under_way"
    task = (await _next(unit, "task"))["task"]  # the unit is sent to the target at once
    assert task["kind"] == "go_to" and (task["details"]["lat"], task["details"]["lon"]) == (45.7612, 126.6201)
    assert "查封被执行人车辆" in task["title"]

    note = await world.client.post(f"/api/operations/{op['id']}/events", json={"text": "已控制车辆，正在拖移"},
                                   headers=world.auth("operator"))  # fmt: skip
    assert note.status == 201
    linked = await world.client.post(f"/api/operations/{op['id']}/events",
                                     json={"text": "现场录像", "recording": "HLJ0102-U01/2026-11-22T09:30"},
                                     headers=world.auth("operator"))  # fmt: skip
    assert linked.status == 201
    missing_query = await world.client.post(f"/api/operations/{op['id']}/events",
                                            json={"text": "查控", "query_id": "no-such-query"},
                                            headers=world.auth("operator"))  # fmt: skip
    assert missing_query.status == 422  # as another court's query: nothing is learnt by naming one

    done = await world.client.post(f"/api/operations/{op['id']}/conclude", json={"note": "车辆已扣押"},
                                   headers=world.auth("supervisor"))  # fmt: skip
    body = (await done.json())["operation"]
    assert done.status == 200 and body["status"] == "concluded" and body["ended_ms"] is not None
    assert [e["kind"] for e in body["timeline"]] == ["created", "under_way", "note", "recording", "concluded"]
    assert body["timeline"][-1]["text"] == "车辆已扣押"
    again = await world.client.post(f"/api/operations/{op['id']}/conclude", json={}, headers=world.auth("operator"))
    assert again.status == 409 and "cannot become concluded" in (await again.json())["error"]["message"]
    live = await (await world.client.get("/api/operations", headers=world.auth("operator"))).json()
    assert live["operations"] == []
    everything = await (await world.client.get("/api/operations?all=true", headers=world.auth("operator"))).json()
    assert [o["status"] for o in everything["operations"]] == ["concluded"]


async def test_units_can_change_while_planned_and_bad_requests_are_refused(world: World) -> None:
    op = (await (await _plan(world, unit_ids=[])).json())["operation"]
    units = await world.client.put(f"/api/operations/{op['id']}/units", json={"unit_ids": [UNIT]},
                                   headers=world.auth("operator"))  # fmt: skip
    assert units.status == 200 and (await units.json())["operation"]["unit_ids"] == [UNIT]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"target": TARGET | {"lat": 95}}, 422, "lat"),
        ({"unit_ids": ["NO-SUCH-UNIT"]}, 422, "NO-SUCH-UNIT"),
        ({"kind": "raid"}, 422, "kind"),
        ({"court_id": "NOPE"}, 404, "NOPE"),
    ]
    for fields, status, words in cases:
        response = await _plan(world, **fields)
        assert response.status == status, (fields, await response.text())
        assert words in await response.text()
    await world.add_user("songbei", Role.OPERATOR, "HLJ0109")
    token = await world.login("songbei")
    other = await world.client.get(f"/api/operations/{op['id']}", headers={"Authorization": f"Bearer {token}"})
    assert other.status == 403
    cancelled = await world.client.post(f"/api/operations/{op['id']}/cancel", json={}, headers=world.auth("operator"))
    assert cancelled.status == 200
    late = await world.client.put(f"/api/operations/{op['id']}/units", json={"unit_ids": []},
                                  headers=world.auth("operator"))  # fmt: skip
    assert late.status == 409


async def test_an_operation_names_no_other_courts_commander_case_or_query(world: World) -> None:
    from core.ids import CaseId, CourtId, QueryId, UserId
    from persistence.query_models import PartyKind, Query, submit_audit

    await world.add_user("songbei_op", Role.OPERATOR, "HLJ0109")  # a sibling basic court
    await world.add_user("daoli_op", Role.OPERATOR, "HLJ0102")
    songbei = await world.store.find_user("songbei_op")
    daoli = await world.store.find_user("daoli_op")
    assert songbei is not None and daoli is not None
    for commander in (songbei.id, 999_999):
        refused = await _plan(world, commander_id=commander)
        assert refused.status == 422, await refused.text()
        assert (await refused.json())["error"]["message"] == (
            f"commander_id: user {commander} is not on the staff of court HLJ0102 or a court above"
        )
    for commander in (daoli.id, (await world.store.find_user("supervisor")).id):  # type: ignore[union-attr]
        assert (await _plan(world, commander_id=commander)).status == 201  # the court, or the centre above

    theirs = await world.store.add_case(case_number="(2026)黑0109执77号", court_id=CourtId("HLJ0109"), title="t",
                                        created_by=UserId(songbei.id), created_ms=1,
                                        parties=[(PartyKind.PERSON, "王五", "11010519491231002X")])  # fmt: skip
    wrong_case = await _plan(world, case_id=theirs.id)
    assert wrong_case.status == 422
    assert "黑0109" not in await wrong_case.text() and "王五" not in await wrong_case.text()
    their_query = Query(QueryId("q-songbei"), CaseId(theirs.id), UserId(songbei.id), "r", 1, 2)
    await world.store.add_query(their_query, [], audit=submit_audit(their_query, []))
    op = (await (await _plan(world)).json())["operation"]
    link = {"text": "查控", "query_id": "q-songbei"}
    linked = await world.client.post(f"/api/operations/{op['id']}/events", json=link, headers=world.auth("operator"))
    assert linked.status == 422
    assert (await linked.json())["error"]["message"] == "query_id: not a query of this operation's court"
    events = await (await world.client.get(f"/api/operations/{op['id']}", headers=world.auth("operator"))).json()
    assert [e["kind"] for e in events["operation"]["timeline"]] == ["created"]
