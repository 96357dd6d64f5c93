"""Duty in the command centre (执行值守): today's officer and technician per court, their sign-in, and the duty
log, which merges the notes the people on duty write with what happened (alarms raised and handled, tasks
sent), so the next shift reads one account of the day."""

from __future__ import annotations

import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, StringConstraints

from alarms.views import alarm_view
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import RowId, Strict
from command_center.auth import Access, current_user
from command_center.keys import STORE
from core.errors import Conflict, NoDutyPost, NotFound, ValidationFailed
from core.ids import CourtId, UserId
from courts.duty_day import bounds, today
from courts.visibility import require_visible, visible_courts
from persistence.duty_models import DutyPost, RosterEntry
from persistence.models import Role, User
from persistence.port import Store

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MANAGERS = frozenset({Access.SUPERVISOR, Access.ADMIN})
CENTRE_ROLES = (Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RosterIn(Strict):
    officer_id: RowId
    technician_id: RowId


class NoteIn(Strict):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    court_id: str | None = None


class RosterOut(BaseModel):
    day: str
    roster: list[dict[str, Any]]


class LogOut(BaseModel):
    day: str
    entries: list[dict[str, Any]]


async def _roster_view(store: Store, entries: list[RosterEntry]) -> list[dict[str, Any]]:
    names = {u.id: u.display_name for u in await store.list_users(None)}
    return [{"court_id": e.court_id, "post": e.post.value, "user_id": e.user_id, "name": names.get(e.user_id),
             "signed_in_ms": e.signed_in_ms} for e in entries]  # fmt: skip


def _day(request: web.Request) -> str:
    day = request.query.get("day") or today(_now_ms())
    bounds(day)
    return day


@api.route("GET", "/api/duty", summary="Who is on duty (?day=YYYY-MM-DD, default today)", tag="duty",
           access=COMMANDERS, response=RosterOut)  # fmt: skip
async def get_roster(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    day = _day(request)
    entries = await store.duty_roster(await visible_courts(store, current_user(request)), day)
    return json_response(RosterOut(day=day, roster=await _roster_view(store, entries)))


@api.route("PUT", "/api/duty/{court_id}/{day}", summary="Set a court's officer and technician on duty for a day",
           tag="duty", access=MANAGERS, body=RosterIn, response=RosterOut, errors=(NotFound,))  # fmt: skip
async def set_roster(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    court = await store.get_court(CourtId(request.match_info["court_id"]))
    await require_visible(store, caller, court.id)
    day = request.match_info["day"]
    bounds(day)
    data = body(request, RosterIn)
    posts = []
    for post, user_id in ((DutyPost.OFFICER, data.officer_id), (DutyPost.TECHNICIAN, data.technician_id)):
        user = await _staff_of(store, court.id, user_id, f"{post.value}_id")
        if user.role not in CENTRE_ROLES:
            raise ValidationFailed(f"user {user_id} is a {user.role.value}: duty posts are for the centre's staff")
        posts.append((post, user))
    entries = [await store.set_duty_post(court.id, day, post, user.id, assigned_by=caller.user.id)
               for post, user in posts]  # both checked before either is set  # fmt: skip
    return json_response(RosterOut(day=day, roster=await _roster_view(store, entries)))


async def _staff_of(store: Store, court_id: CourtId, user_id: int, field: str) -> User:
    """Duty at a court is held by that court's own staff; whether the user exists elsewhere, and what they
    are there, is not told."""
    try:
        user = await store.get_user(UserId(user_id))
    except NotFound:
        user = None
    if user is None or user.court_id != court_id:
        raise ValidationFailed(f"{field}: user {user_id} is not on the staff of court {court_id}")
    return user


@api.route("POST", "/api/duty/sign-in", summary="Sign in on the posts you hold today", tag="duty",
           access=COMMANDERS, response=RosterOut, errors=(Conflict,))  # fmt: skip
async def sign_in(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    day = today(_now_ms())
    entries = await store.sign_in_duty(caller.user.id, day, _now_ms())
    if not entries:
        raise NoDutyPost(f"{caller.user.display_name} holds no duty post on {day}")
    return json_response(RosterOut(day=day, roster=await _roster_view(store, entries)))


@api.route("POST", "/api/duty/notes", summary="Write in the duty log", tag="duty", access=COMMANDERS,
           body=NoteIn, response=LogOut, status=201, errors=(NotFound,))  # fmt: skip
async def add_note(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    data = body(request, NoteIn)
    court_id = CourtId(data.court_id) if data.court_id else caller.user.court_id
    await store.get_court(court_id)
    await require_visible(store, caller, court_id)
    note = await store.add_duty_note(court_id, caller.user.id, data.text, _now_ms())
    entry = {"at_ms": note.at_ms, "court_id": note.court_id, "kind": "note", "user_id": note.user_id,
             "text": note.text}  # fmt: skip
    return json_response(LogOut(day=today(note.at_ms), entries=[entry]), status=201)


@api.route("GET", "/api/duty/log", summary="The duty log of a day: notes, alarms and tasks (?day=)", tag="duty",
           access=COMMANDERS, response=LogOut)  # fmt: skip
async def duty_log(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    day = _day(request)
    start, end = bounds(day)
    courts = await visible_courts(store, current_user(request))
    entries: list[dict[str, Any]] = [
        {"at_ms": n.at_ms, "court_id": n.court_id, "kind": "note", "user_id": n.user_id, "text": n.text}
        for n in await store.duty_notes(courts, start, end)
    ]
    for alarm in await store.list_alarms(court_ids=courts, live_only=False, limit=5000):
        view = alarm_view(alarm)
        for kind, at, who in (("alarm_raised", alarm.raised_ms, None),
                              ("alarm_acknowledged", alarm.acknowledged_ms, alarm.acknowledged_by),
                              (f"alarm_{alarm.state.value}", alarm.closed_ms, alarm.closed_by)):  # fmt: skip
            if at is not None and start <= at < end:
                entries.append({"at_ms": at, "court_id": alarm.court_id, "kind": kind, "user_id": who, "alarm": view})
    for task in await store.list_tasks(court_ids=courts, limit=5000):
        if start <= task.created_ms < end:
            entries.append({"at_ms": task.created_ms, "court_id": task.court_id, "kind": "task_sent",
                            "user_id": task.created_by, "text": f"{task.unit_id}: {task.title}",
                            "task_status": task.status.value})  # fmt: skip
    entries.sort(key=lambda e: e["at_ms"])
    return json_response(LogOut(day=day, entries=entries))
