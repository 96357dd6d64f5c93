"""Entrustment between courts (执行委托): court A asks court B's centre to act in B's area; B accepts or
refuses with a reason and assigns its own units; A follows the timeline and those units' positions while
the task runs, and sees nothing of B's other units.

Authorisation: the court hierarchy says which courts a caller speaks for (``courts.visibility``); the
entrustment says what each side may do: the receiving side decides, assigns and reports, the asking side
may withdraw, and both read.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from command_center.api.params import flag
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import Strict
from command_center.auth import Access, UserCaller, current_user
from command_center.keys import ENTRUSTMENT_RATES, ENTRUSTMENTS, STORE
from core.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from core.ids import CourtId, UnitId
from courts.visibility import require_visible, visible_courts
from entrustments.desk import tasks_sent
from entrustments.models import LIVE_ENTRUSTMENTS, MOVER, Entrustment, EntrustmentStatus, Side
from entrustments.views import entrustment_view
from persistence.port import Store
from tasks.models import LIVE

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
MAX_UNITS = 100


class EntrustmentIn(Strict):
    to_court_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="the receiving court (受托法院), in whose area the task is"
    )
    from_court_id: str | None = Field(None, description="the asking court; default: the caller's court")
    task: Text
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    deadline: AwareDatetime = Field(description="ISO 8601 with a time zone, e.g. 2026-12-05T18:00:00+08:00")
    reason: Note

    @model_validator(mode="after")
    def _both_or_neither(self) -> EntrustmentIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class DecisionNoteIn(Strict):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class StepReasonIn(Strict):
    reason: Note


class EntrustedUnitsIn(Strict):
    unit_ids: list[str] = Field(max_length=MAX_UNITS)


class ProgressReportIn(Strict):
    text: Note


class EntrustmentOut(BaseModel):
    entrustment: dict[str, Any]
    sides: list[Side] = Field(description="the caller's sides: asking (委托法院) and/or receiving (受托法院)")


class EntrustmentList(BaseModel):
    entrustments: list[dict[str, Any]] = Field(description="each with the caller's ``sides`` of it")


class EntrustedUnits(BaseModel):
    entrustment_id: str
    units: list[dict[str, Any]]


async def _sides(store: Store, caller: UserCaller, e: Entrustment) -> set[Side]:
    courts = await visible_courts(store, caller)
    sides = {side for side in Side if courts is None or e.court_of(side) in courts}
    if not sides:
        raise Forbidden(f"entrustment {e.id} is neither asked by nor of your courts")
    return sides


async def _entrustment(request: web.Request) -> tuple[Entrustment, set[Side]]:
    store = request.app[STORE]
    e = await store.get_entrustment(request.match_info["entrustment_id"])
    return e, await _sides(store, current_user(request), e)


def _on(sides: set[Side], side: Side, what: str) -> None:
    if side not in sides:
        who = "the receiving court (受托法院)" if side is Side.RECEIVING else "the asking court (委托法院)"
        raise Forbidden(f"only {who} may {what}")


async def _out(store: Store, e: Entrustment, sides: set[Side], status: int = 200) -> web.StreamResponse:
    view = entrustment_view(e, await store.entrustment_events(e.id))
    return json_response(EntrustmentOut(entrustment=view, sides=sorted(sides)), status=status)


@api.route("POST", "/api/entrustments", summary="Entrust a task to another court's centre (执行委托)",
           tag="entrustments", access=COMMANDERS, body=EntrustmentIn, response=EntrustmentOut, status=201,
           errors=(NotFound, Conflict, TooManyRequests))  # fmt: skip
async def request_entrustment(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    data = body(request, EntrustmentIn)
    from_court = CourtId(data.from_court_id) if data.from_court_id else caller.user.court_id
    await store.get_court(from_court)
    await require_visible(store, caller, from_court)
    to_court = (await store.get_court(CourtId(data.to_court_id))).id
    await request.app[ENTRUSTMENT_RATES].hit(user=str(caller.user.id), court=from_court)  # 429 beyond the allowance
    e = await request.app[ENTRUSTMENTS].request(
        from_court_id=from_court, to_court_id=to_court, task=data.task, address=data.address, lat=data.lat,
        lon=data.lon, deadline_ms=int(data.deadline.timestamp() * 1000), reason=data.reason, user_id=caller.user.id,
    )  # fmt: skip
    return await _out(store, e, await _sides(store, caller, e), status=201)


@api.route("GET", "/api/entrustments", summary="Entrustments asked by or of the caller's courts (?all=true "
           "includes ended ones)", tag="entrustments", access=COMMANDERS, response=EntrustmentList)  # fmt: skip
async def list_entrustments(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    statuses = None if flag(request, "all") else LIVE_ENTRUSTMENTS
    courts = await visible_courts(store, current_user(request))
    found = await store.list_entrustments(court_ids=courts, statuses=statuses)
    views = [entrustment_view(e) | {"sides": [s for s in Side if courts is None or e.court_of(s) in courts]}
             for e in found]  # fmt: skip
    return json_response(EntrustmentList(entrustments=views))


@api.route("GET", "/api/entrustments/{entrustment_id}", summary="One entrustment with its timeline",
           tag="entrustments", access=COMMANDERS, response=EntrustmentOut, errors=(NotFound,))  # fmt: skip
async def get_entrustment(request: web.Request) -> web.StreamResponse:
    e, sides = await _entrustment(request)
    return await _out(request.app[STORE], e, sides)


def _move(status: EntrustmentStatus, path: str, model: type[DecisionNoteIn] | type[StepReasonIn], summary: str) -> None:
    side = MOVER[status]

    @api.route("POST", f"/api/entrustments/{{entrustment_id}}/{path}", summary=summary, tag="entrustments",
               access=COMMANDERS, body=model, response=EntrustmentOut, errors=(NotFound, Conflict))  # fmt: skip
    async def move(request: web.Request) -> web.StreamResponse:
        e, sides = await _entrustment(request)
        _on(sides, side, path)
        data = body(request, model)
        note = data.reason if isinstance(data, StepReasonIn) else data.note
        e = await request.app[ENTRUSTMENTS].move(e, status, current_user(request).user.id, note)
        return await _out(request.app[STORE], e, sides)

    move.__name__ = f"entrustment_{path}"


_move(EntrustmentStatus.ACCEPTED, "accept", DecisionNoteIn, "Accept the entrustment (the receiving court)")
_move(EntrustmentStatus.REFUSED, "refuse", StepReasonIn, "Refuse the entrustment with a reason (the receiving court)")
_move(EntrustmentStatus.COMPLETED, "complete", StepReasonIn, "Report the task done (the receiving court)")
_move(EntrustmentStatus.WITHDRAWN, "withdraw", StepReasonIn, "Withdraw the entrustment (the asking court)")


@api.route("PUT", "/api/entrustments/{entrustment_id}/units", summary="Assign the receiving court's units "
           "(each new one is sent to the address)", tag="entrustments", access=COMMANDERS, body=EntrustedUnitsIn,
           response=EntrustmentOut, errors=(NotFound, Conflict))  # fmt: skip
async def assign_units(request: web.Request) -> web.StreamResponse:
    e, sides = await _entrustment(request)
    _on(sides, Side.RECEIVING, "assign units")
    store = request.app[STORE]
    own = set(await store.court_subtree(e.to_court_id))
    unit_ids = body(request, EntrustedUnitsIn).unit_ids
    for unit_id in unit_ids:  # an unknown unit and another court's get the same answer
        try:
            unit = await store.get_unit(UnitId(unit_id))
        except NotFound:
            unit = None
        if unit is None or unit.court_id not in own:
            raise ValidationFailed(f"unit_ids: {unit_id} is not a unit of court {e.to_court_id}")
    e = await request.app[ENTRUSTMENTS].assign(e, [UnitId(u) for u in unit_ids], current_user(request).user.id)
    return await _out(store, e, sides)


@api.route("POST", "/api/entrustments/{entrustment_id}/reports", summary="Report progress (the receiving court)",
           tag="entrustments", access=COMMANDERS, body=ProgressReportIn, response=EntrustmentOut, status=201,
           errors=(NotFound, Conflict))  # fmt: skip
async def report_progress(request: web.Request) -> web.StreamResponse:
    e, sides = await _entrustment(request)
    _on(sides, Side.RECEIVING, "report progress")
    await request.app[ENTRUSTMENTS].report(e, current_user(request).user.id, body(request, ProgressReportIn).text)
    return await _out(request.app[STORE], e, sides, status=201)


@api.route("GET", "/api/entrustments/{entrustment_id}/units", summary="Where the assigned units are and how far "
           "their task has got: for the asking court only while the entrustment runs and each unit's task is live",
           tag="entrustments",
           access=COMMANDERS, response=EntrustedUnits, errors=(NotFound,))  # fmt: skip
async def entrusted_units(request: web.Request) -> web.StreamResponse:
    e, sides = await _entrustment(request)
    if Side.RECEIVING not in sides and not e.running:
        raise Forbidden(f"entrustment is {e.status.value}: the asking court follows its units only while it runs")
    store = request.app[STORE]
    positions = await store.latest_positions(list(e.unit_ids))
    states = await store.unit_states(list(e.unit_ids))
    sent = tasks_sent(await store.entrustment_events(e.id))
    own = Side.RECEIVING in sides
    units = []
    for unit_id in e.unit_ids:
        unit = await store.get_unit(unit_id)
        task = None if unit_id not in sent else await store.get_task(sent[unit_id])
        # the asking court follows a unit while it is on the entrusted task, not once it is called off or done
        # (then it works for its own court again): the task's outcome it still reads
        shown = own or (task is not None and task.status in LIVE)
        fix = positions.get(unit_id) if shown else None
        state = states.get(unit_id) if shown else None
        progress = None if task is None else {"id": task.id, "status": task.status.value, "note": task.note,
                                              "updated_ms": task.updated_ms}  # fmt: skip
        units.append({"unit_id": unit_id, "name": unit.name, "court_id": unit.court_id,
                      "status": None if state is None else state.status.value,
                      "position": None if fix is None else fix.view(), "task": progress})  # fmt: skip
    return json_response(EntrustedUnits(entrustment_id=e.id, units=units))
