"""Courts, users and field units: the directory an administrator keeps."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from command_center.api.params import whole_number
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import (
    CourtIn,
    CourtList,
    CourtOut,
    Revoked,
    UnitCreated,
    UnitIn,
    UnitList,
    UnitOut,
    Unlocked,
    UserIn,
    UserList,
    UserOut,
)
from command_center.auth import PEOPLE, Access, current_caller, current_user
from command_center.credentials import check_password_strength, lookup_hash, new_device_secret
from command_center.keys import AUDIT, LOGIN_THROTTLE, PASSWORDS, REVOCATIONS, SETTINGS, STORE
from command_center.revocation import Revocation, Subject
from core.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from core.ids import CourtId, UnitId, UserId
from courts.visibility import require_visible, visible_courts
from gb28181.enrol import enrol, ensure_free, keepalive_silence
from persistence.models import Court, User

api = Registry()
log = logging.getLogger(__name__)

ADMIN = frozenset({Access.ADMIN})
WATCHERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN, Access.JUDGE})


@api.route(
    "GET",
    "/api/courts",
    summary="All courts with their parent (the hierarchy)",
    tag="directory",
    access=PEOPLE,
    response=CourtList,
)
async def list_courts(request: web.Request) -> web.StreamResponse:
    courts = await request.app[STORE].list_courts()
    return json_response(CourtList(courts=[CourtOut.of(c) for c in courts]))


@api.route(
    "PUT",
    "/api/courts/{court_id}",
    summary="Create or update a court",
    tag="directory",
    access=ADMIN,
    body=CourtIn,
    response=CourtOut,
    errors=(NotFound, Conflict),
)
async def put_court(request: web.Request) -> web.StreamResponse:
    data = body(request, CourtIn)
    if data.id != request.match_info["court_id"]:
        raise Conflict("court id in the path and the body differ")
    court = Court(CourtId(data.id), data.name, data.level, CourtId(data.parent_id) if data.parent_id else None)
    store = request.app[STORE]
    if court.parent_id is not None:
        await store.get_court(court.parent_id)
        if court.parent_id in await store.court_subtree(court.id):
            raise Conflict("a court cannot be placed below itself or one of its own lower courts")
    await store.upsert_court(court)
    return json_response(CourtOut.of(court))


@api.route(
    "GET",
    "/api/users",
    summary="Users of the courts the caller may see",
    tag="directory",
    access=frozenset({Access.SUPERVISOR, Access.ADMIN}),
    response=UserList,
)
async def list_users(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    users = await store.list_users(await visible_courts(store, current_caller(request)))
    return json_response(UserList(users=[UserOut.of(u) for u in users]))


@api.route(
    "POST",
    "/api/users",
    summary="Create a user",
    tag="directory",
    access=ADMIN,
    body=UserIn,
    response=UserOut,
    status=201,
    errors=(NotFound, Conflict, ValidationFailed),
)
async def add_user(request: web.Request) -> web.StreamResponse:
    data = body(request, UserIn)
    check_password_strength(data.password, username=data.username, display_name=data.display_name)
    store = request.app[STORE]
    await store.get_court(CourtId(data.court_id))
    password_hash = await asyncio.to_thread(request.app[PASSWORDS].hash, data.password)
    user = await store.add_user(
        username=data.username,
        display_name=data.display_name,
        password_hash=password_hash,
        role=data.role,
        court_id=CourtId(data.court_id),
    )
    return json_response(UserOut.of(user), status=201)


async def _user_in_path(request: web.Request) -> User:
    raw = request.match_info["user_id"]
    user_id = whole_number(raw)
    if user_id is None:
        raise NotFound(f"user {raw} does not exist")
    return await request.app[STORE].get_user(UserId(user_id))


@api.route(
    "POST",
    "/api/users/{user_id}/revoke-sessions",
    summary="Log a user out everywhere",
    tag="directory",
    access=ADMIN,
    response=Revoked,
    errors=(NotFound,),
)
async def revoke_user_sessions(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    user = await _user_in_path(request)
    revoked = await store.revoke_user_sessions(user.id)
    await request.app[REVOCATIONS].announce(Revocation(Subject.USER, str(user.id), "revoked"))  # open sockets too
    return json_response(Revoked(revoked=revoked))


async def _set_disabled(request: web.Request, disabled: bool) -> UserOut:
    user = await _user_in_path(request)
    store = request.app[STORE]
    await store.set_user_disabled(user.id, disabled)
    return UserOut.of(await store.get_user(user.id))


@api.route(
    "POST",
    "/api/users/{user_id}/disable",
    summary="Disable a user: their sessions stop working and their open screens, views and talkback end",
    tag="directory",
    access=ADMIN,
    response=UserOut,
    errors=(NotFound,),
)
async def disable_user(request: web.Request) -> web.StreamResponse:
    user = await _set_disabled(request, True)
    await request.app[STORE].revoke_user_sessions(UserId(user.id))
    await request.app[REVOCATIONS].announce(Revocation(Subject.USER, str(user.id), "disabled"))
    return json_response(user)


@api.route(
    "POST",
    "/api/users/{user_id}/enable",
    summary="Enable a disabled user again (they log in anew: sessions that were open stay ended)",
    tag="directory",
    access=ADMIN,
    response=UserOut,
    errors=(NotFound,),
)
async def enable_user(request: web.Request) -> web.StreamResponse:
    return json_response(await _set_disabled(request, False))


@api.route(
    "POST",
    "/api/users/{user_id}/unlock",
    summary="Clear a user's failed-login locks at every address (audited)",
    tag="directory",
    access=ADMIN,
    response=Unlocked,
    errors=(NotFound, ServiceUnavailable),
)
async def unlock_user(request: web.Request) -> web.StreamResponse:
    user = await _user_in_path(request)
    cleared = await request.app[LOGIN_THROTTLE].unlock(user.username)
    admin = current_user(request).user
    await request.app[AUDIT].record("user.unlock", UserId(admin.id), details={"user_id": user.id,
                                    "username": user.username, "cleared": cleared})  # fmt: skip
    log.info("admin %s unlocked logins of user %s (%s): %d records cleared", admin.username, user.id,
             user.username, cleared)  # fmt: skip
    return json_response(Unlocked(username=user.username, cleared=cleared))


@api.route(
    "GET",
    "/api/units",
    summary="Field units of the courts the caller may see",
    tag="directory",
    access=WATCHERS,
    response=UnitList,
)
async def list_units(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    units = await store.list_units(await visible_courts(store, current_caller(request)))
    return json_response(UnitList(units=[UnitOut.of(u) for u in units]))


@api.route(
    "GET",
    "/api/units/{unit_id}",
    summary="One field unit",
    tag="directory",
    access=WATCHERS,
    response=UnitOut,
    errors=(NotFound,),
)
async def get_unit(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_caller(request), unit.court_id)
    return json_response(UnitOut.of(unit))


@api.route(
    "POST",
    "/api/units",
    summary="Register a field unit; its device secret is shown once",
    tag="directory",
    access=ADMIN,
    body=UnitIn,
    response=UnitCreated,
    status=201,
    errors=(NotFound, Conflict),
)
async def add_unit(request: web.Request) -> web.StreamResponse:
    data = body(request, UnitIn)
    store = request.app[STORE]
    await store.get_court(CourtId(data.court_id))
    gb = request.app[SETTINGS].gb28181
    offline_after = data.offline_after_seconds
    if data.gb_device_id is not None:
        await ensure_free(store, data.gb_device_id)
        offline_after = offline_after or keepalive_silence(gb)
    elif data.gb_rtp_transport is not None:
        raise ValidationFailed("gb_rtp_transport is for GB/T 28181 units: give gb_device_id too")
    secret = new_device_secret()
    unit = await store.add_unit(
        unit_id=UnitId(data.id),
        name=data.name,
        kind=data.kind,
        court_id=CourtId(data.court_id),
        secret_hash=lookup_hash(secret),
        offline_after_seconds=offline_after,
    )
    sip_password = None
    if data.gb_device_id is not None:
        sip_password = await enrol(store, unit.id, data.gb_device_id, gb, rtp_transport=data.gb_rtp_transport)
    return json_response(UnitCreated(unit=UnitOut.of(unit), secret=secret, sip_password=sip_password), status=201)


@api.route(
    "POST",
    "/api/units/{unit_id}/revoke",
    summary="Revoke a unit's device credential",
    tag="directory",
    access=ADMIN,
    response=UnitOut,
    errors=(NotFound,),
)
async def revoke_unit(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    unit_id = UnitId(request.match_info["unit_id"])
    await store.revoke_unit(unit_id)
    # A stolen phone stops now: its sockets, its media session and data channel, on every process.
    await request.app[REVOCATIONS].announce(Revocation(Subject.UNIT, unit_id, "revoked"))
    return json_response(UnitOut.of(await store.get_unit(unit_id)))
