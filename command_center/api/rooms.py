"""Consultation rooms (执行会商): a supervisor or operator opens a room for an operation or a case and invites
the centres that should confer; the host invites more, mutes and closes; the invited join and leave.

Authorisation: the courts involved are the matter's court and, for an operation, every court whose units take
part; a person may be invited (and may join) only while the court hierarchy (``courts.visibility``) lets them
see one of those courts. An unknown user and one not authorised get the same answer, so the route tells no
one who exists in another court. The room itself is seen only by its members (and admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints, model_validator

from command_center.api.params import flag, whole_number
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import MAX_BIGINT, RowId, Strict
from command_center.auth import Access, UserCaller, current_user
from command_center.forwarding import leave_room_home, on_room_home
from command_center.keys import PINNED_VIEWS, ROOM_MEDIA, ROOMS, STORE
from consultations.models import Room, RoomStatus, authorised_for
from consultations.views import room_view
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, CourtId, UnitId, UserId
from courts.visibility import visible_courts
from persistence.models import Role, User
from persistence.port import Store

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
#: Who confers: the centres' people (a judge follows a case from the query desk, not from a room).
PARTICIPANT_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
MAX_INVITED = 20
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RoomIn(Strict):
    title: Title
    operation_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="the operation conferred on (give this or case_id)"
    )
    case_id: RowId | None = Field(None, description="the case conferred on (give this or operation_id)")
    unit_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="the unit on the scene whose live video is pinned in the room"
    )
    invited: list[RowId] = Field(default_factory=list, max_length=MAX_INVITED, description="user ids")

    @model_validator(mode="after")
    def _one_matter(self) -> RoomIn:
        if (self.operation_id is None) == (self.case_id is None):
            raise ValueError("a room is for one operation or one case: give operation_id or case_id")
        return self


class InviteIn(Strict):
    user_ids: list[RowId] = Field(min_length=1, max_length=MAX_INVITED)


class MuteIn(Strict):
    user_id: RowId
    muted: bool = True


class RoomOut(BaseModel):
    room: dict[str, Any] = Field(description="with its members: present, muted, and display names")
    host: bool = Field(description="whether the caller is the room's host")


class RoomList(BaseModel):
    rooms: list[dict[str, Any]]


class CandidateList(BaseModel):
    court_ids: list[str] = Field(description="the courts involved, the matter's first")
    candidates: list[dict[str, Any]] = Field(description="{user_id, display_name, role, court_id}, not the caller")


@dataclass(frozen=True, slots=True)
class _Person:
    """A user as ``courts.visibility`` reads a caller, to ask what someone other than the caller may see."""

    user: User

    @property
    def access(self) -> str:
        return self.user.role.value

    @property
    def court_id(self) -> CourtId:
        return self.user.court_id


async def _may_take_part(store: Store, user: User, room: Room) -> bool:
    if user.disabled or user.role not in PARTICIPANT_ROLES:
        return False
    return authorised_for(await visible_courts(store, _Person(user)), room)


async def _authorised(store: Store, user_ids: list[int], room: Room, field: str) -> list[UserId]:
    for user_id in user_ids:
        try:
            user = await store.get_user(UserId(user_id))
        except NotFound:
            user = None
        if user is None or not await _may_take_part(store, user, room):
            raise ValidationFailed(f"{field}: user {user_id} is not authorised for the courts of this room")
    return [UserId(u) for u in user_ids]


async def _matter(
    store: Store, operation_id: str | None, case_id: int | None
) -> tuple[list[CourtId], str | None, CaseId | None]:
    """The courts involved, the matter's court first."""
    if operation_id is not None:
        operation = await store.get_operation(operation_id)
        return [operation.court_id, *await store.operation_courts(operation.id)], operation.id, None
    case = await store.get_case(CaseId(case_id or 0))
    return [case.court_id], None, case.id


async def _probe(request: web.Request, title: str, operation_id: str | None, case_id: int | None) -> Room:
    """The room as it would be opened by the caller (not stored): 403 unless the caller sees a court involved."""
    store = request.app[STORE]
    caller = current_user(request)
    courts, operation, case = await _matter(store, operation_id, case_id)
    probe = Room("", title, courts[0], tuple(courts), operation, case, None, caller.user.id, RoomStatus.OPEN, 0, None)
    if not authorised_for(await visible_courts(store, caller), probe):
        raise Forbidden(f"court {courts[0]} is outside your jurisdiction")
    return probe


async def watches_pinned_unit(store: Store, user_id: UserId, unit_id: UnitId) -> bool:
    """Whether the user is present in an open room that pins this unit: a member from another court involved
    (a cross-court operation's) watches the room's unit on its WHEP route though it is outside their courts.
    Only a unit of one of the room's courts: a room never opens a view of another court's unit."""
    unit_court: CourtId | None = None
    for room in await store.rooms_of(user_id, statuses=(RoomStatus.OPEN,)):
        if room.unit_id != unit_id:
            continue
        if unit_court is None:
            try:
                unit_court = (await store.get_unit(unit_id)).court_id
            except NotFound:
                return False
        if unit_court not in room.court_ids:
            continue
        if any(m.user_id == user_id and m.present for m in await store.room_members(room.id)):
            return True
    return False


async def _end_pinned_views(request: web.Request, room: Room, user_ids: list[UserId], reason: str) -> None:
    """Views of the pinned unit that only the room admitted end when the member is no longer in it, on every
    process (the unit may stream on another one than this)."""
    store, pinned = request.app[STORE], request.app.get(PINNED_VIEWS)
    if room.unit_id is None or pinned is None:
        return
    unit = await store.get_unit(room.unit_id)
    outside = set()
    for user_id in user_ids:
        seen = await visible_courts(store, _Person(await store.get_user(user_id)))
        if seen is not None and unit.court_id not in seen:
            outside.add(user_id)
    if outside:
        await pinned.announce(room.id, unit.id, outside, reason)


def _changed(request: web.Request, room: Room) -> None:
    """The room's members changed: its SFU publishes their state. Only the room's media home knows who publishes,
    so a route calling this is forwarded there first (``on_room_home``): another process would tell every
    member's page that nobody publishes."""
    if (media := request.app.get(ROOM_MEDIA)) is not None:
        media.changed(room.id)


async def _room(request: web.Request) -> Room:
    """The room, for its members (and admins) only."""
    store = request.app[STORE]
    caller = current_user(request)
    room = await store.get_room(request.match_info["room_id"])
    if caller.access is Access.ADMIN:
        return room
    if caller.user.id not in {m.user_id for m in await store.room_members(room.id)}:
        raise Forbidden(f"you are not invited to room {room.id}")
    return room


async def _out(request: web.Request, room: Room, caller: UserCaller, status: int = 200) -> web.StreamResponse:
    """The room with its members, each with their media now (``publishing``, ``speaking``) when media runs."""
    store = request.app[STORE]
    media = request.app.get(ROOM_MEDIA)
    members = await store.room_members(room.id)
    view = room_view(room, members)
    for member in view["members"]:
        member["display_name"] = member["name"] = (await store.get_user(member["user_id"])).display_name
        if media is not None:
            member |= media.media_state(room.id, member["user_id"])
    view["recording"] = media is not None and media.recording(room.id)
    return json_response(RoomOut(room=view, host=caller.user.id == room.host_id), status=status)


@api.route("POST", "/api/rooms", summary="Open a consultation room (执行会商) for an operation or a case",
           tag="rooms", access=COMMANDERS, body=RoomIn, response=RoomOut, status=201,
           errors=(NotFound,))  # fmt: skip
async def open_room(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    data = body(request, RoomIn)
    probe = await _probe(request, data.title, data.operation_id, data.case_id)
    unit_id = None
    if data.unit_id is not None:  # an unknown unit and one outside the caller's courts get the same answer
        seen = await visible_courts(store, caller)
        try:
            unit = await store.get_unit(UnitId(data.unit_id))
        except NotFound:
            unit = None
        if unit is None or (seen is not None and unit.court_id not in seen):
            raise ValidationFailed(f"unit_id: {data.unit_id} is not a unit of your courts")
        if unit.court_id not in probe.court_ids:
            raise ValidationFailed(f"unit_id: {data.unit_id} is not a unit of the room's courts "
                                   f"({', '.join(probe.court_ids)})")  # fmt: skip
        unit_id = unit.id
    invited = await _authorised(store, data.invited, probe, "invited")
    room = await request.app[ROOMS].open(
        title=data.title, court_ids=probe.court_ids, operation_id=probe.operation_id, case_id=probe.case_id,
        unit_id=unit_id,
        host_id=caller.user.id, invited=invited,
    )  # fmt: skip
    return await _out(request, room, caller, status=201)


@api.route("GET", "/api/rooms", summary="The rooms the caller hosts or is invited to (?all=true includes closed "
           "ones)", tag="rooms", access=COMMANDERS, response=RoomList)  # fmt: skip
async def list_rooms(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    statuses = None if flag(request, "all") else (RoomStatus.OPEN,)
    rooms = await request.app[STORE].rooms_of(caller.user.id, statuses=statuses)
    return json_response(RoomList(rooms=[room_view(r) for r in rooms]))


@api.route("GET", "/api/rooms/candidates", summary="Who may be invited to a room on this operation or case "
           "(?operation_id= or ?case_id=): the centres' people of its courts and the courts above them",
           tag="rooms", access=COMMANDERS, response=CandidateList, errors=(NotFound,))  # fmt: skip
async def candidates(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    operation_id = request.query.get("operation_id") or None
    raw_case = request.query.get("case_id") or None
    if (operation_id is None) == (raw_case is None):
        raise ValidationFailed("a room is for one operation or one case: give operation_id or case_id")
    case_id = None if raw_case is None else whole_number(raw_case)
    if raw_case is not None and (case_id is None or not 1 <= case_id <= MAX_BIGINT):
        raise ValidationFailed(f"case_id must be a record's id (1 to {MAX_BIGINT}), got {raw_case!r}")
    probe = await _probe(request, "", operation_id, case_id)
    parents = {c.id: c.parent_id for c in await store.list_courts()}
    above: set[CourtId] = set()
    for court in probe.court_ids:  # a centre sees its own court and every court below it
        at: CourtId | None = court
        while at is not None and at not in above:
            above.add(at)
            at = parents.get(at)
    people = [u for u in await store.list_users(sorted(above)) if await _may_take_part(store, u, probe)]
    found = [{"user_id": u.id, "display_name": u.display_name, "role": u.role.value, "court_id": u.court_id}
             for u in people if u.id != current_user(request).user.id]  # fmt: skip
    return json_response(CandidateList(court_ids=list(probe.court_ids), candidates=found))


@api.route("GET", "/api/rooms/{room_id}", summary="One room with its members", tag="rooms", access=COMMANDERS,
           response=RoomOut, errors=(NotFound,))  # fmt: skip
async def get_room(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    if (home := await on_room_home(request, room.id)) is not None:  # its media state is known there
        return home
    return await _out(request, room, current_user(request))


@api.route("POST", "/api/rooms/{room_id}/invite", summary="Invite more people (the host)", tag="rooms",
           access=COMMANDERS, body=InviteIn, response=RoomOut, errors=(NotFound, Conflict))  # fmt: skip
async def invite(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    caller = current_user(request)
    store = request.app[STORE]
    user_ids = await _authorised(store, body(request, InviteIn).user_ids, room, "user_ids")
    if (home := await on_room_home(request, room.id, await request.read())) is not None:  # _changed: see there
        return home
    await request.app[ROOMS].invite(room, user_ids, caller.user.id)
    _changed(request, room)
    return await _out(request, room, caller)


@api.route("POST", "/api/rooms/{room_id}/join", summary="Join the room (the invited)", tag="rooms",
           access=COMMANDERS, response=RoomOut, errors=(NotFound, Conflict))  # fmt: skip
async def join(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    caller = current_user(request)
    store = request.app[STORE]
    if not await _may_take_part(store, caller.user, room):  # authorisation may have changed since the invitation
        raise Forbidden(f"you are not authorised for the courts of room {room.id}")
    if (home := await on_room_home(request, room.id)) is not None:  # _changed: see there
        return home
    await request.app[ROOMS].join(room, caller.user.id)
    _changed(request, room)
    return await _out(request, room, caller)


@api.route("POST", "/api/rooms/{room_id}/leave", summary="Leave the room", tag="rooms", access=COMMANDERS,
           response=RoomOut, errors=(NotFound,))  # fmt: skip
async def leave(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    caller = current_user(request)
    if (home := await on_room_home(request, room.id)) is not None:  # its SFU ends the member's streams there
        return home
    await request.app[ROOMS].leave(room, caller.user.id)
    if (media := request.app.get(ROOM_MEDIA)) is not None:  # leaving ends one's stream and views
        await media.end_member(room.id, caller.user.id, "left the room")
    await _end_pinned_views(request, room, [caller.user.id], "left the room")
    return await _out(request, room, caller)


@api.route("POST", "/api/rooms/{room_id}/mute", summary="Mute or unmute a participant (the host)", tag="rooms",
           access=COMMANDERS, body=MuteIn, response=RoomOut, errors=(NotFound, Conflict))  # fmt: skip
async def mute(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    caller = current_user(request)
    data = body(request, MuteIn)
    if (home := await on_room_home(request, room.id, await request.read())) is not None:  # silenced at the source
        return home
    await request.app[ROOMS].mute(room, UserId(data.user_id), muted=data.muted, by=caller.user.id)
    if (media := request.app.get(ROOM_MEDIA)) is not None:  # the participant's audio stops (or resumes) now
        media.mute(room, UserId(data.user_id), muted=data.muted)
    return await _out(request, room, caller)


@api.route("POST", "/api/rooms/{room_id}/close", summary="Close the room (the host)", tag="rooms",
           access=COMMANDERS, response=RoomOut, errors=(NotFound, Conflict))  # fmt: skip
async def close(request: web.Request) -> web.StreamResponse:
    room = await _room(request)
    caller = current_user(request)
    if (home := await on_room_home(request, room.id)) is not None:  # every stream ends at the room's home
        return home
    closed = await request.app[ROOMS].close(room, caller.user.id)
    if (media := request.app.get(ROOM_MEDIA)) is not None:  # every stream and view of the room ends
        await media.end_room(room.id, "the room was closed")
    await leave_room_home(request, room.id)
    members = [m.user_id for m in await request.app[STORE].room_members(room.id)]
    await _end_pinned_views(request, room, members, "the room was closed")
    return await _out(request, closed, caller)
