"""Enforcement operations (执行行动): plan, assign units, start (units are sent to the target), note what
happens (linking asset queries and recordings), conclude or cancel. The wall shows those under way."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from command_center.api.params import flag
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import RowId, Strict
from command_center.auth import Access, current_user
from command_center.keys import OPERATIONS, STORE
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, CourtId, QueryId, UnitId, UserId
from courts.visibility import require_visible, visible_courts
from operations.models import LIVE_OPERATIONS, Operation, OperationKind, OperationStatus
from operations.views import operation_view
from persistence.models import User
from persistence.port import Store

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
MAX_UNITS = 100


class Target(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] = ""
    radius_m: float = Field(200.0, gt=0, le=20_000, description="the operation's geofence around the target")


class OperationIn(Strict):
    kind: OperationKind
    title: Text
    court_id: str | None = Field(None, description="default: the caller's court")
    case_id: RowId | None = None
    commander_id: RowId | None = Field(None, description="overall commander in the centre; default: the caller")
    onsite_commander: Text
    target: Target
    unit_ids: list[str] = Field(default_factory=list, max_length=MAX_UNITS)


class UnitsIn(Strict):
    unit_ids: list[str] = Field(max_length=MAX_UNITS)


class StepIn(Strict):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None


class EventIn(Strict):
    text: Note
    query_id: str | None = Field(None, description="link an asset query to the operation")
    recording: Annotated[str, StringConstraints(max_length=300)] | None = Field(
        None, description="link a media recording (its session or file) to the operation"
    )


class OperationOut(BaseModel):
    operation: dict[str, Any]


class OperationList(BaseModel):
    operations: list[dict[str, Any]]


async def _units(store: Store, caller: Any, unit_ids: list[str], court_id: CourtId) -> list[UnitId]:
    """The operation's units: the caller's to command, and of the operation's court or a court below it
    (异地调度: an upper court's operation may take units of every court it oversees, never a sibling's)."""
    below = set(await store.court_subtree(court_id))
    courts = await visible_courts(store, caller)
    for unit_id in unit_ids:  # an unknown unit and another court's get the same answer: nothing is learnt
        try:
            unit_court: CourtId | None = (await store.get_unit(UnitId(unit_id))).court_id
        except NotFound:
            unit_court = None
        if unit_court not in below or (courts is not None and unit_court not in courts):
            raise ValidationFailed(f"unit_ids: unit {unit_id} is not of court {court_id} or a court below it")
    return [UnitId(u) for u in unit_ids]


async def _commander(store: Store, user_id: int, court_id: CourtId) -> User:
    """The overall commander: staff of the operation's court or of a court above it (whose centre watches it,
    上下一体), never another court's; an unknown id gets the same answer, so nothing is learnt of other courts."""
    refusal = ValidationFailed(f"commander_id: user {user_id} is not on the staff of court {court_id} or a court above")
    try:
        user = await store.get_user(UserId(user_id))
    except NotFound:
        raise refusal from None
    if court_id not in await store.court_subtree(user.court_id):
        raise refusal
    return user


async def _operation(request: web.Request) -> Operation:
    """An operation the caller commands: its court's centre or one above (the hierarchy)."""
    store = request.app[STORE]
    op = await store.get_operation(request.match_info["operation_id"])
    await require_visible(store, current_user(request), op.court_id)
    return op


async def _followed_operation(request: web.Request) -> Operation:
    """An operation the caller may read: one it commands, or one its units take part in (异地调度)."""
    store = request.app[STORE]
    op = await store.get_operation(request.match_info["operation_id"])
    courts = await visible_courts(store, current_user(request))
    if courts is not None and not {op.court_id, *await store.operation_courts(op.id)} & set(courts):
        raise Forbidden(f"court {op.court_id} is outside your jurisdiction")
    return op


@api.route("POST", "/api/operations", summary="Plan an enforcement operation", tag="operations", access=COMMANDERS,
           body=OperationIn, response=OperationOut, status=201, errors=(NotFound,))  # fmt: skip
async def create_operation(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    data = body(request, OperationIn)
    court_id = CourtId(data.court_id) if data.court_id else caller.user.court_id
    await store.get_court(court_id)
    await require_visible(store, caller, court_id)
    if data.case_id is not None:  # an unknown case and another court's get the same answer: case ids count up
        try:
            case_court: CourtId | None = (await store.get_case(CaseId(data.case_id))).court_id
        except NotFound:
            case_court = None
        if case_court != court_id:
            raise ValidationFailed(f"case_id: case {data.case_id} is not a case of court {court_id}")
    commander = caller.user if data.commander_id is None else await _commander(store, data.commander_id, court_id)
    op = await request.app[OPERATIONS].create(
        court_id=court_id, kind=data.kind, title=data.title,
        case_id=None if data.case_id is None else CaseId(data.case_id), commander_id=commander.id,
        onsite_commander=data.onsite_commander, target=data.target.model_dump(),
        unit_ids=await _units(store, caller, data.unit_ids, court_id), created_by=caller.user.id,
    )  # fmt: skip
    return json_response(OperationOut(operation=operation_view(op, await store.operation_events(op.id))), status=201)


@api.route("GET", "/api/operations", summary="Operations of the caller's courts and those its units take part in "
           "(?all=true includes ended ones)",
           tag="operations", access=COMMANDERS, response=OperationList)  # fmt: skip
async def list_operations(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    statuses = None if flag(request, "all") else LIVE_OPERATIONS
    courts = await visible_courts(store, current_user(request))
    ops = await store.list_operations(court_ids=courts, statuses=statuses)
    if courts is not None:  # and those of upper courts in which units of these courts take part (异地调度)
        ours = {o.id for o in ops}
        shared = await store.operations_with_units_of(courts, statuses=statuses)
        ops = sorted([*ops, *(o for o in shared if o.id not in ours)], key=lambda o: (-o.created_ms, o.id))
    return json_response(OperationList(operations=[operation_view(o) for o in ops]))


@api.route("GET", "/api/operations/{operation_id}", summary="One operation with its timeline", tag="operations",
           access=COMMANDERS, response=OperationOut, errors=(NotFound,))  # fmt: skip
async def get_operation(request: web.Request) -> web.StreamResponse:
    op = await _followed_operation(request)
    return json_response(OperationOut(operation=operation_view(op, await request.app[STORE].operation_events(op.id))))


@api.route("PUT", "/api/operations/{operation_id}/units", summary="Set the operation's units", tag="operations",
           access=COMMANDERS, body=UnitsIn, response=OperationOut, errors=(NotFound, Conflict))  # fmt: skip
async def set_units(request: web.Request) -> web.StreamResponse:
    op = await _operation(request)
    store = request.app[STORE]
    caller = current_user(request)
    units = await _units(store, caller, body(request, UnitsIn).unit_ids, op.court_id)
    op = await request.app[OPERATIONS].assign(op, units, caller.user.id)
    return json_response(OperationOut(operation=operation_view(op, await store.operation_events(op.id))))


def _step(status: OperationStatus, path: str, summary: str) -> None:
    @api.route("POST", f"/api/operations/{{operation_id}}/{path}", summary=summary, tag="operations",
               access=COMMANDERS, body=StepIn, response=OperationOut, errors=(NotFound, Conflict))  # fmt: skip
    async def step(request: web.Request) -> web.StreamResponse:
        op = await _operation(request)
        note = body(request, StepIn).note
        op = await request.app[OPERATIONS].move(op, status, current_user(request).user.id, note)
        return json_response(
            OperationOut(operation=operation_view(op, await request.app[STORE].operation_events(op.id)))
        )

    step.__name__ = f"operation_{path}"


_step(OperationStatus.UNDER_WAY, "start", "Start the operation: every assigned unit is sent to the target")
_step(OperationStatus.CONCLUDED, "conclude", "Conclude the operation")
_step(OperationStatus.CANCELLED, "cancel", "Cancel the operation")


@api.route("POST", "/api/operations/{operation_id}/events", summary="Add to the timeline (a note, a linked query "
           "or recording)", tag="operations", access=COMMANDERS, body=EventIn, response=OperationOut, status=201,
           errors=(NotFound,))  # fmt: skip
async def add_event(request: web.Request) -> web.StreamResponse:
    op = await _operation(request)
    store = request.app[STORE]
    data = body(request, EventIn)
    ref: dict[str, Any] = {}
    kind = "note"
    if data.query_id is not None:
        try:  # an unknown query and another court's get the same answer: say nothing of its case or judge
            query = await store.get_query(QueryId(data.query_id))
            query_court: CourtId | None = (await store.get_case(query.case_id)).court_id
        except NotFound:
            query_court = None
        if query_court != op.court_id:
            raise ValidationFailed("query_id: not a query of this operation's court")
        if op.case_id is not None and query.case_id != op.case_id:
            raise ValidationFailed("query_id: not a query of this operation's case")
        ref, kind = {"query_id": query.id}, "query"
    elif data.recording is not None:
        ref, kind = {"recording": data.recording}, "recording"
    await request.app[OPERATIONS].note(op, current_user(request).user.id, data.text, ref, kind)
    return json_response(OperationOut(operation=operation_view(op, await store.operation_events(op.id))), status=201)
