"""The media of consultation rooms (执行会商): publish, view each participant, trickle/restart, end, record.

WHIP/WHEP in shape (RFC 9725: SDP bodies, 201 with ``Location``, ``ETag`` and ICE-server ``Link`` headers,
``PATCH`` trickle, ``DELETE``), with the room's rules on top: only a present member publishes or views, a
closed room takes nothing (409), the host records. The SFU is ``media.rooms.RoomMedia``; the room's
unit is watched on its own WHEP route (``command_center.api.media``).

A room's sessions all live in its media home, the process that took its first publish (the ``room:<id>``
lease); a request reaching another process is forwarded there with the caller's credentials
(``command_center.forwarding``).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.media import (
    OFFER_ERRORS,
    PATCH_ERRORS,
    _viewer,
    limited,
    patched,
    read_fragment,
    read_offer,
    sdp_created,
)
from command_center.api.registry import Registry, body, json_response
from command_center.api.rooms import _may_take_part, _room
from command_center.api.schemas import Strict
from command_center.auth import Access, current_user
from command_center.forwarding import on_room_home
from command_center.keys import MEDIA, ROOM_MEDIA, STORE
from command_center.media_http import preflight
from consultations.models import Room, RoomStatus
from core.errors import Conflict, Forbidden, NotFound, TooManyRequests
from core.ids import UserId
from media.peers import AnySession
from media.sessions import SessionId

api = Registry()

MEMBERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
ROOM_OFFER_ERRORS = (*OFFER_ERRORS, NotFound, Conflict)


class RecordIn(Strict):
    on: bool = Field(description="true: record every participant's stream from now; false: stop")


class RecordOut(BaseModel):
    room_id: str
    recording: bool
    participants: list[str] = Field(description="the participants' streams (hub keys) started or stopped")


async def _present(request: web.Request) -> Room:
    """The room, for a member who has joined it: 409 when closed, 403 when not invited or not present."""
    room = await _room(request)
    if room.status is not RoomStatus.OPEN:
        raise Conflict(f"room {room.id} is {room.status.value}")
    caller = current_user(request)
    members = {m.user_id: m for m in await request.app[STORE].room_members(room.id)}
    member = members.get(caller.user.id)
    if member is None:
        raise Forbidden(f"you are not invited to room {room.id}")
    if not member.present:
        raise Forbidden(f"join room {room.id} before publishing or viewing")
    if not await _may_take_part(request.app[STORE], caller.user, room):
        raise Forbidden(f"you are not authorised for the courts of room {room.id}")
    return room


def _location(room: Room, session_id: str) -> str:
    return f"/api/rooms/{room.id}/media/sessions/{session_id}"


@api.route("POST", "/api/rooms/{room_id}/media/publish", summary="Publish one's microphone (and camera) in the "
           "room (WHIP shape, body: SDP offer, sendonly); a second publish replaces the first", tag="rooms",
           access=MEMBERS, status=201, errors=ROOM_OFFER_ERRORS)  # fmt: skip
async def publish(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await limited(request, f"user {caller.user.id}")
    room = await _present(request)
    offer = await read_offer(request)
    if (elsewhere := await on_room_home(request, room.id, offer.encode(), claim=True)) is not None:
        return elsewhere
    muted = any(m.muted for m in await request.app[STORE].room_members(room.id) if m.user_id == caller.user.id)
    answered = await request.app[ROOM_MEDIA].publish(room, _viewer(request), caller.user.display_name, offer,
                                                      muted=muted)  # fmt: skip
    return sdp_created(request, answered, _location(room, answered.id), f"user{caller.user.id}")


@api.route("POST", "/api/rooms/{room_id}/media/participants/{user_id}/view", summary="Receive one participant's "
           "audio and video (WHEP shape, body: SDP offer, recvonly); one peer connection per participant",
           tag="rooms", access=MEMBERS, status=201, errors=ROOM_OFFER_ERRORS)  # fmt: skip
async def view(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await limited(request, f"user {caller.user.id}")
    room = await _present(request)
    raw = request.match_info["user_id"]
    if not raw.isdigit():
        raise NotFound(f"no participant {raw} publishing in room {room.id}")
    user_id = UserId(int(raw))
    offer = await read_offer(request)
    if (elsewhere := await on_room_home(request, room.id, offer.encode())) is not None:
        return elsewhere
    rooms = request.app[ROOM_MEDIA]
    if not rooms.media_state(room.id, user_id)["publishing"]:
        raise NotFound(f"participant {user_id} is not publishing in room {room.id}")
    answered = await rooms.view(room, _viewer(request), user_id, offer)
    return sdp_created(request, answered, _location(room, answered.id), f"user{caller.user.id}")


@api.route("PATCH", "/api/rooms/{room_id}/media/sessions/{session_id}", summary="Trickle ICE candidates or "
           "restart ICE of one's own room session (body: trickle-ice-sdpfrag, If-Match: its ETag)", tag="rooms",
           access=MEMBERS, status=204, errors=PATCH_ERRORS)  # fmt: skip
async def patch(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await limited(request, f"user {caller.user.id}")
    fragment = await read_fragment(request)
    if (elsewhere := await on_room_home(request, request.match_info["room_id"], fragment)) is not None:
        return elsewhere
    session = _own_session(request)
    return patched(await request.app[MEDIA].patch(session, request.headers.get("If-Match"), fragment))


@api.route("DELETE", "/api/rooms/{room_id}/media/sessions/{session_id}", summary="End one's own room session "
           "(stop publishing, or stop viewing a participant)", tag="rooms", access=MEMBERS,
           errors=(NotFound, TooManyRequests))  # fmt: skip
async def end(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await limited(request, f"user {caller.user.id}")
    if (elsewhere := await on_room_home(request, request.match_info["room_id"])) is not None:
        return elsewhere
    session = _own_session(request)
    await request.app[ROOM_MEDIA].end_session(request.match_info["room_id"], session)
    return web.Response(status=200)


def _own_session(request: web.Request) -> AnySession:
    """The caller's own publisher or view in the room; 404 for anyone else's (no hint that it exists)."""
    room_id, session_id = request.match_info["room_id"], SessionId(request.match_info["session_id"])
    session = request.app[ROOM_MEDIA].owned_session(room_id, session_id, current_user(request).user.id)
    if session is None:
        raise NotFound(f"no media session {session_id} of yours in room {room_id}")
    return session


@api.route("OPTIONS", "/api/rooms/{room_id}/media/publish", summary="What the room's publish endpoint takes",
           tag="rooms", access=None, status=204)  # fmt: skip
async def publish_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, "OPTIONS, POST", accept_post=True)


@api.route("OPTIONS", "/api/rooms/{room_id}/media/participants/{user_id}/view", summary="What the room's view "
           "endpoint takes", tag="rooms", access=None, status=204)  # fmt: skip
async def view_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, "OPTIONS, POST", accept_post=True)


@api.route("OPTIONS", "/api/rooms/{room_id}/media/sessions/{session_id}", summary="What a room media session "
           "takes (Accept-Patch)", tag="rooms", access=None, status=204)  # fmt: skip
async def session_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, "OPTIONS, PATCH, DELETE", accept_post=False)


@api.route("POST", "/api/rooms/{room_id}/recording", summary="Start or stop recording the room as evidence (the "
           "host): each participant's stream its own hashed segments", tag="rooms", access=MEMBERS,
           body=RecordIn, response=RecordOut, errors=(NotFound, Conflict, TooManyRequests))  # fmt: skip
async def record(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await limited(request, f"user {caller.user.id}")
    room = await _room(request)
    if caller.user.id != room.host_id:
        raise Forbidden("only the room's host may record it")
    if room.status is not RoomStatus.OPEN:
        raise Conflict(f"room {room.id} is {room.status.value}")
    on = body(request, RecordIn).on
    if (elsewhere := await on_room_home(request, room.id, await request.read())) is not None:
        return elsewhere
    keys = await request.app[ROOM_MEDIA].record(room, on)
    await request.app[ROOM_MEDIA].audit_recording(room, caller.user.id, on, keys)
    return json_response(RecordOut(room_id=room.id, recording=on, participants=keys))
