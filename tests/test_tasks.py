"""Tasks to field units: sent over the unit's live socket, queued while it is offline and delivered once when
it is back, reported on by the unit, cancelled by an operator, and an overdue task raises an alarm."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import ClientWebSocketResponse

from command_center.keys import TASKS
from field_device.client import TelemetryClient
from tests.conftest import World
from tests.test_field_client import base, until
from tests.test_live_tracking import open_screen, open_unit

UNIT = "HLJ0102-U01"


async def _create(world: World, who: str = "operator", **fields: Any) -> Any:
    payload = {"kind": "go_to", "title": "前往被执行人住所", "details": {"lat": 45.76, "lon": 126.62,
               "address": "道里区安静街 12 号"}} | fields  # fmt: skip
    return await world.client.post(f"/api/units/{UNIT}/tasks", json=payload, headers=world.auth(who))


async def _next(unit: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await unit.receive_json(timeout=5)
        if message["type"] == kind:
            return message


async def _status(world: World, task_id: str) -> str:
    return (await world.store.get_task(task_id)).status.value


async def test_a_task_for_an_offline_unit_is_delivered_once_when_it_reconnects(world: World) -> None:
    screen = await open_screen(world, "operator", "tasks")
    created = await _create(world)
    assert created.status == 201, await created.text()
    task = (await created.json())["task"]
    assert task["status"] == "queued"  # nobody to deliver to yet
    assert (await screen.next("task"))["task"]["status"] == "queued"

    received: list[dict[str, Any]] = []
    client = TelemetryClient(base(world), world.device_secret, label=UNIT, backoff=(0.05, 0.2),
                             on_task=received.append)  # fmt: skip
    await client.start()
    try:
        await until(lambda: task["id"] in client.tasks)
        assert (await screen.next("task"))["task"]["status"] == "delivered"
        assert (await screen.next("task"))["task"]["status"] == "acknowledged"  # the client acknowledged it
        client.drop_link(0.3)  # the link drops and comes back: an acknowledged task is not sent again
        await until(lambda: client.reconnects >= 1)
        await until(lambda: client.connected)
        await client.report_task(task["id"], "done", "已到达，无人在家")
        assert (await screen.next("task"))["task"]["status"] == "done"
        assert await _status(world, task["id"]) == "done"
    finally:
        await client.close()
    assert [t["id"] for t in received] == [task["id"]] and client.task_deliveries == 1
    assert received[0]["details"]["address"] == "道里区安静街 12 号"
    assert (await world.store.get_task(task["id"])).note == "已到达，无人在家"


async def test_a_connected_unit_reports_progress_and_bad_reports_are_refused(world: World) -> None:
    screen = await open_screen(world, "operator", "tasks")
    unit = await open_unit(world)
    task = (await (await _create(world, kind="seize", title="查封车辆", details={"address": "香坊区"})).json())["task"]
    pushed = await _next(unit, "task")
    assert pushed["task"]["id"] == task["id"] and pushed["task"]["kind"] == "seize"

    async def report(**fields: Any) -> dict[str, Any]:
        await unit.send_json({"type": "task_update", "task_id": task["id"]} | fields)
        while True:
            answer: dict[str, Any] = await unit.receive_json(timeout=5)
            if answer["type"] in ("task_ack", "error"):
                return answer

    assert await report(status="in_progress") == {"type": "task_ack", "task_id": task["id"], "status": "in_progress"}
    bad = await report(status="delivered")
    assert bad["code"] == "validation_failed" and "may not report delivered" in bad["message"]
    unknown = await report(status="flying")
    assert unknown["code"] == "validation_failed" and "status must be one of" in unknown["message"]
    assert (await report(status="done", note="车辆已扣押"))["status"] == "done"
    backwards = await report(status="in_progress")
    assert backwards["code"] == "conflict" and "task is done; it cannot become in_progress" in backwards["message"]
    await unit.send_json({"type": "task_update", "task_id": "no-such-task", "status": "done"})
    missing = await _next(unit, "error")
    assert missing["code"] == "not_found"
    statuses: list[str] = []
    while not statuses or statuses[-1] != "done":
        statuses.append((await screen.next("task"))["task"]["status"])
    assert statuses == ["queued", "delivered", "in_progress", "done"]
    # the socket still serves telemetry after all that
    await unit.send_json({"seq": 1, "fix_time_ms": int(time.time() * 1000), "lat": 45.7, "lon": 126.6})
    assert (await _next(unit, "ack"))["stored"] == [1]


async def test_an_operator_cancels_and_the_unit_is_told(world: World) -> None:
    unit = await open_unit(world)
    task = (await (await _create(world)).json())["task"]
    await _next(unit, "task")
    cancel = await world.client.post(f"/api/tasks/{task['id']}/cancel", json={"note": "目标已转移"},
                                     headers=world.auth("supervisor"))  # fmt: skip
    assert cancel.status == 200 and (await cancel.json())["task"]["status"] == "cancelled"
    told = await _next(unit, "task_cancelled")
    assert told == {"type": "task_cancelled", "task_id": task["id"], "note": "目标已转移"}
    again = await world.client.post(f"/api/tasks/{task['id']}/cancel", json={}, headers=world.auth("operator"))
    assert again.status == 409
    live = await (await world.client.get("/api/tasks", headers=world.auth("operator"))).json()
    assert live["tasks"] == []
    everything = await (await world.client.get("/api/tasks?all=true", headers=world.auth("operator"))).json()
    assert [t["status"] for t in everything["tasks"]] == ["cancelled"]


async def test_an_overdue_task_raises_an_alarm_that_closes_when_the_task_ends(world: World) -> None:
    screen = await open_screen(world, "operator", "alarms")
    past = int(time.time() * 1000) - 60_000
    task = (await (await _create(world, title="限时到场", due_ms=past)).json())["task"]
    assert await world.client.app[TASKS].sweep_overdue() == 1
    raised = (await screen.next("alarm", event="raised"))["alarm"]
    assert raised["kind"] == "task_overdue" and raised["subject"] == task["id"] and raised["unit_id"] == UNIT
    assert await world.client.app[TASKS].sweep_overdue() == 1  # still overdue: the same alarm, no new one
    unit = await open_unit(world)
    await _next(unit, "task")
    await unit.send_json({"type": "task_update", "task_id": task["id"], "status": "failed", "note": "道路封闭"})
    assert (await _next(unit, "task_ack"))["status"] == "failed"
    closed = (await screen.next("alarm", event="cleared"))["alarm"]
    assert closed["id"] == raised["id"] and closed["state"] == "resolved"


async def test_bad_task_requests_are_refused(world: World) -> None:
    no_place = await _create(world, details={})
    assert no_place.status == 422 and "needs details.lat and details.lon" in (await no_place.json())["error"]["message"]
    bad_kind = await _create(world, kind="teleport")
    assert bad_kind.status == 422
    judge = await _create(world, who="judge")
    assert judge.status == 403
    nowhere = await world.client.post("/api/units/NO-SUCH/tasks", json={"kind": "call_back", "title": "回电"},
                                      headers=world.auth("operator"))  # fmt: skip
    assert nowhere.status == 404
