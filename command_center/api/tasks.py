"""Tasks to field units (派警任务): an operator sends a unit a task; the unit's reports come over its socket.

A task for a unit that is offline waits and is delivered when the unit reconnects (field_units.tasks).
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from command_center.api.params import flag
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import BigInt, Strict
from command_center.auth import Access, current_user
from command_center.keys import STORE, TASKS
from core.errors import Conflict, NotFound, ValidationFailed
from core.ids import UnitId
from courts.visibility import require_visible, visible_courts
from tasks.models import LIVE, TaskKind
from tasks.views import task_view

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class Place(Strict):
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None
    note: Note | None = None


class TaskIn(Strict):
    kind: TaskKind
    title: Text
    details: Place = Field(default_factory=Place)
    due_ms: BigInt | None = Field(None, gt=0, description="when the task is overdue (ms since the epoch)")


class CancelIn(Strict):
    note: Note | None = None


class TaskOut(BaseModel):
    task: dict[str, Any]


class TaskList(BaseModel):
    tasks: list[dict[str, Any]]


@api.route(
    "POST",
    "/api/units/{unit_id}/tasks",
    summary="Send a unit a task (delivered now, or when the unit reconnects)",
    tag="tasks",
    access=COMMANDERS,
    body=TaskIn,
    response=TaskOut,
    status=201,
    errors=(NotFound,),
)
async def create_task(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, caller, unit.court_id)
    data = body(request, TaskIn)
    if data.kind is TaskKind.GO_TO and (data.details.lat is None or data.details.lon is None):
        raise ValidationFailed("a go_to task needs details.lat and details.lon")
    details = data.details.model_dump(exclude_none=True)
    task = await request.app[TASKS].create(
        unit, data.kind, data.title, created_by=caller.user.id, details=details, due_ms=data.due_ms
    )
    return json_response(TaskOut(task=task_view(task)), status=201)


@api.route(
    "GET",
    "/api/units/{unit_id}/tasks",
    summary="A unit's tasks, newest first",
    tag="tasks",
    access=COMMANDERS,
    response=TaskList,
    errors=(NotFound,),
)
async def unit_tasks(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_user(request), unit.court_id)
    tasks = await store.list_tasks(unit_id=unit.id)
    return json_response(TaskList(tasks=[task_view(t) for t in tasks]))


@api.route(
    "GET",
    "/api/tasks",
    summary="Tasks under way in the caller's courts (?all=true includes ended ones)",
    tag="tasks",
    access=COMMANDERS,
    response=TaskList,
)
async def list_tasks(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    everything = flag(request, "all")
    courts = await visible_courts(store, current_user(request))
    tasks = await store.list_tasks(court_ids=courts, statuses=None if everything else LIVE)
    return json_response(TaskList(tasks=[task_view(t) for t in tasks]))


@api.route(
    "POST",
    "/api/tasks/{task_id}/cancel",
    summary="Cancel a task that has not ended; the unit is told",
    tag="tasks",
    access=COMMANDERS,
    body=CancelIn,
    response=TaskOut,
    errors=(NotFound, Conflict),
)
async def cancel_task(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    task = await store.get_task(request.match_info["task_id"])
    await require_visible(store, current_user(request), task.court_id)
    cancelled = await request.app[TASKS].cancel(task, note=body(request, CancelIn).note)
    return json_response(TaskOut(task=task_view(cancelled)))
