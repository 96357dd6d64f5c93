"""Alarms (告警处置): the live list of the caller's courts and the operator's three steps on an alarm.

Every step records who and when (in the alarm itself) and reaches every screen of the court at once.
Resolving an SOS whose unit still calls for help also clears the unit's SOS: the operator handled it, and
one action must not leave the unit flashing red on the wall.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, StringConstraints

from alarms.models import AlarmAction, AlarmKind
from alarms.views import alarm_view
from command_center.api.params import bounded_int, flag, whole_number
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import Strict
from command_center.auth import Access, current_user
from command_center.keys import ALARMS, STORE, TRACKER
from core.errors import Conflict, NotFound, ValidationFailed
from core.ids import UnitId
from courts.visibility import require_visible, visible_courts

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_LIST = 1000


class AlarmStep(Strict):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class AlarmOut(BaseModel):
    alarm: dict[str, Any]


class AlarmList(BaseModel):
    alarms: list[dict[str, Any]]


def _alarm_id(raw: str) -> int:
    value = whole_number(raw)
    if value is None:
        raise ValidationFailed(f"alarm id must be a positive integer, got {raw!r}")
    return value


@api.route(
    "GET",
    "/api/alarms",
    summary="Alarms of the caller's courts, newest first (?all=true includes closed ones; ?limit=)",
    tag="alarms",
    access=COMMANDERS,
    response=AlarmList,
)
async def list_alarms(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    live_only = not flag(request, "all")
    limit = bounded_int(request, "limit", default=200, low=1, high=MAX_LIST)
    courts = await visible_courts(store, current_user(request))
    alarms = await store.list_alarms(court_ids=courts, live_only=live_only, limit=limit)
    return json_response(AlarmList(alarms=[alarm_view(a) for a in alarms]))


def _step(action: AlarmAction, summary: str) -> None:
    @api.route(
        "POST",
        f"/api/alarms/{{alarm_id}}/{action.value.replace('_', '-')}",
        summary=summary,
        tag="alarms",
        access=COMMANDERS,
        body=AlarmStep,
        response=AlarmOut,
        errors=(NotFound, Conflict),
    )
    async def step(request: web.Request) -> web.StreamResponse:
        caller = current_user(request)
        store = request.app[STORE]
        alarm = await store.get_alarm(_alarm_id(request.match_info["alarm_id"]))
        await require_visible(store, caller, alarm.court_id)
        data = body(request, AlarmStep)
        alarm = await request.app[ALARMS].act(alarm.id, action, user_id=caller.user.id, note=data.note)
        if action is not AlarmAction.ACKNOWLEDGE and alarm.kind is AlarmKind.SOS and alarm.active:
            await request.app[TRACKER].clear_sos(UnitId(alarm.subject))
            alarm = await store.get_alarm(alarm.id)
        return json_response(AlarmOut(alarm=alarm_view(alarm)))

    step.__name__ = f"alarm_{action.value}"


_step(AlarmAction.ACKNOWLEDGE, "Acknowledge an alarm (已确认): someone is on it")
_step(AlarmAction.RESOLVE, "Resolve an alarm (已处置), with an optional note")
_step(AlarmAction.FALSE_ALARM, "Mark an alarm false (误报), with an optional note")
