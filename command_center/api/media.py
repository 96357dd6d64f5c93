"""WHIP ingest (RFC 9725) for field units and WHEP viewing for the command centre (docs/protocols.md).

Bodies are SDP (``application/sdp``), not JSON, so these handlers read them themselves; the registry
still does authentication and the role check. The WebRTC work is ``media.sessions.MediaHub``'s. With
several server processes, a request for a unit whose session lives in another process is answered by
that process (``command_center.forwarding``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from pydantic import BaseModel, Field

from cluster.port import media_lease
from command_center.api.params import MAX_EPOCH_MS, bounded_int
from command_center.api.registry import Registry, json_response
from command_center.api.rooms import watches_pinned_unit
from command_center.auth import Access, current_device, current_user
from command_center.forwarding import on_unit_node
from command_center.keys import CLUSTER, GB_LIVE, MEDIA, SETTINGS, STORE
from command_center.media_http import MEDIA_RATES, SDP, SDPFRAG, ice_server_links, preflight
from core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotStreaming,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
    ValidationFailed,
)
from core.ids import UnitId
from courts.visibility import require_visible, visible_courts
from media.evidence import SEGMENT_ACTION
from media.offers import not_forwarded
from media.sessions import Answered, Patched, Role, SessionId, Viewer
from media.trickle import MAX_BYTES as MAX_FRAGMENT_BYTES
from media.trickle import PreconditionFailed, PreconditionRequired
from persistence.models import Unit

log = logging.getLogger(__name__)
api = Registry()

DEVICE = frozenset({Access.DEVICE})
VIEWERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_SDP_BYTES = 64 * 1024
OFFER_ERRORS = (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    ServiceUnavailable,
    TooManyRequests,
)
VIEW_ERRORS = (*OFFER_ERRORS, NotFound, Conflict)  # 429: the caller's or their court's cap, or their request rate
PATCH_ERRORS = (BadRequest, NotFound, UnsupportedMediaType, ValidationFailed, PreconditionFailed, PayloadTooLarge,
                PreconditionRequired, TooManyRequests, Conflict, ServiceUnavailable)  # fmt: skip
ENDPOINT_METHODS = "OPTIONS, POST"
NOT_FORWARDED_HEADER = "Media-Not-Forwarded"  # what of the unit's media no viewer gets, and why (AAC)
SESSION_METHODS = "OPTIONS, PATCH, DELETE"


async def read_offer(request: web.Request) -> str:
    """The SDP offer of a WHIP/WHEP POST: 415 for another type, 413 past 64 KiB, 400 if not UTF-8."""
    if request.content_type != SDP:
        raise UnsupportedMediaType(f"expected Content-Type {SDP}, got {request.content_type or 'none'}")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise PayloadTooLarge(f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    raw = await request.read()  # aiohttp's client_max_size bounds a body without Content-Length
    if len(raw) > MAX_SDP_BYTES:
        raise PayloadTooLarge(f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("SDP offer is not UTF-8 text") from None


async def read_fragment(request: web.Request) -> bytes:
    """The body of a PATCH: 415 unless ``application/trickle-ice-sdpfrag`` (RFC 9725 §4.3.1); 413 past
    ``trickle.MAX_BYTES``, here, before it is forwarded to the process holding the session or looked up."""
    if request.content_type != SDPFRAG:
        raise UnsupportedMediaType(f"expected Content-Type {SDPFRAG}, got {request.content_type or 'none'}")
    if request.content_length is not None and request.content_length > MAX_FRAGMENT_BYTES:
        raise PayloadTooLarge(f"SDP fragment larger than {MAX_FRAGMENT_BYTES} bytes")
    raw = await request.read()  # a body without Content-Length: bounded by client_max_size, then checked
    if len(raw) > MAX_FRAGMENT_BYTES:
        raise PayloadTooLarge(f"SDP fragment larger than {MAX_FRAGMENT_BYTES} bytes")
    return raw


def sdp_created(request: web.Request, answered: Answered, location: str, who: str) -> web.Response:
    """201 with the answer (RFC 9725 §4.2): the session URL, its entity-tag, that it takes trickle/restart
    PATCHes, and the STUN/TURN servers to use (§4.6)."""
    headers = CIMultiDict({"Location": location, "ETag": answered.etag, "Accept-Patch": SDPFRAG})
    for link in ice_server_links(request.app[SETTINGS].media, who):
        headers.add("Link", link)
    return web.Response(status=201, text=answered.sdp, content_type=SDP, headers=headers)


def patched(outcome: Patched) -> web.Response:
    """204 for trickled candidates; 200 with the server's fragment and the new ETag for an ICE restart."""
    if outcome.fragment is None:
        return web.Response(status=204, headers={"ETag": outcome.etag})
    return web.Response(status=200, text=outcome.fragment, content_type=SDPFRAG, headers={"ETag": outcome.etag})


async def limited(request: web.Request, who: str) -> None:
    """Count one media request of ``who`` (429 past ``media.requests_per_minute``; across every process when
    they share Redis). A request for a unit streaming elsewhere is counted by the process that handles it,
    once, not by the one that forwards it too (``command_center.forwarding``)."""
    await request.app[MEDIA_RATES].check(who)


def _viewer(request: web.Request) -> Viewer:
    caller = current_user(request)
    return Viewer(caller.user.id, caller.user.username, caller.session.token_hash, caller.session.expires_at,
                  caller.user.court_id)  # fmt: skip


@api.route(
    "POST", "/api/whip", summary="Publish a unit's audio/video (WHIP, body: SDP offer)", tag="media",
    access=DEVICE, status=201, errors=OFFER_ERRORS,
)  # fmt: skip
async def whip_publish(request: web.Request) -> web.StreamResponse:
    unit = current_device(request).unit
    await limited(request, f"unit {unit.id}")
    offer = await read_offer(request)
    answered = await request.app[MEDIA].publish(unit, offer)
    return sdp_created(request, answered, f"/api/whip/{answered.id}", unit.id)


@api.route(
    "OPTIONS", "/api/whip", summary="What the WHIP endpoint takes (Accept-Post) and CORS preflight", tag="media",
    access=None, status=204,
)  # fmt: skip
async def whip_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, ENDPOINT_METHODS, accept_post=True)


@api.route(
    "PATCH", "/api/whip/{session_id}", summary="Trickle ICE candidates or restart ICE (RFC 9725 §4.3, body: "
    "trickle-ice-sdpfrag, If-Match: the session's ETag)", tag="media", access=DEVICE, status=204,
    errors=PATCH_ERRORS,
)  # fmt: skip
async def whip_patch(request: web.Request) -> web.StreamResponse:
    unit = current_device(request).unit
    await limited(request, f"unit {unit.id}")
    fragment = await read_fragment(request)
    hub = request.app[MEDIA]
    session = hub.session(Role.PUBLISHER, unit.id, SessionId(request.match_info["session_id"]), None)
    return patched(await hub.patch(session, request.headers.get("If-Match"), fragment))


@api.route(
    "DELETE", "/api/whip/{session_id}", summary="End a unit's WHIP session", tag="media", access=DEVICE,
    errors=(NotFound, TooManyRequests),
)  # fmt: skip
async def whip_end(request: web.Request) -> web.StreamResponse:
    unit = current_device(request).unit
    await limited(request, f"unit {unit.id}")
    await request.app[MEDIA].end_publish(unit.id, SessionId(request.match_info["session_id"]))
    return web.Response(status=200)


@api.route(
    "OPTIONS", "/api/whip/{session_id}", summary="What a WHIP session takes (Accept-Patch) and CORS preflight",
    tag="media", access=None, status=204,
)  # fmt: skip
async def whip_session_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, SESSION_METHODS, accept_post=False)


@api.route(
    "POST", "/api/whep/{unit_id}", summary="Watch a unit's live audio/video (WHEP, body: SDP offer)", tag="media",
    access=VIEWERS, status=201, errors=VIEW_ERRORS,
)  # fmt: skip
async def whep_view(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    try:
        await require_visible(store, caller, unit.court_id)
    except Forbidden:  # a consultation room's member from another court involved watches the room's unit
        if not await watches_pinned_unit(store, caller.user.id, unit.id):
            raise
    offer = await read_offer(request)
    if (elsewhere := await on_unit_node(request, unit.id, offer.encode())) is not None:
        return elsewhere
    await limited(request, f"user {caller.user.id}")
    await _gb_live(request, unit)
    hub = request.app[MEDIA]
    answered = await hub.view(_viewer(request), unit.id, offer)
    response = sdp_created(request, answered, f"/api/whep/{unit.id}/{answered.id}", f"user{caller.user.id}")
    publisher = hub.publisher(unit.id)
    if publisher is not None and (omitted := not_forwarded(publisher.media)):  # a GB device's AAC: said why
        response.headers[NOT_FORWARDED_HEADER] = "; ".join(omitted.values())
    return response


@api.route(
    "OPTIONS", "/api/whep/{unit_id}", summary="What the WHEP endpoint takes (Accept-Post) and CORS preflight",
    tag="media", access=None, status=204,
)  # fmt: skip
async def whep_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, ENDPOINT_METHODS, accept_post=True)


@api.route(
    "PATCH", "/api/whep/{unit_id}/{session_id}", summary="Trickle ICE candidates or restart ICE of a view "
    "(body: trickle-ice-sdpfrag, If-Match: the session's ETag)", tag="media", access=VIEWERS, status=204,
    errors=PATCH_ERRORS,
)  # fmt: skip
async def whep_patch(request: web.Request) -> web.StreamResponse:
    return await _patch_own(request, Role.VIEWER)


@api.route(
    "DELETE", "/api/whep/{unit_id}/{session_id}", summary="Stop watching (end a WHEP session)", tag="media",
    access=VIEWERS, errors=(NotFound, TooManyRequests),
)  # fmt: skip
async def whep_end(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    unit_id = UnitId(request.match_info["unit_id"])
    if (elsewhere := await on_unit_node(request, unit_id)) is not None:
        return elsewhere
    await limited(request, f"user {caller.user.id}")
    await request.app[MEDIA].end_view(caller.user.id, unit_id, SessionId(request.match_info["session_id"]))
    return web.Response(status=200)


@api.route(
    "OPTIONS", "/api/whep/{unit_id}/{session_id}", summary="What a WHEP session takes (Accept-Patch) and CORS "
    "preflight", tag="media", access=None, status=204,
)  # fmt: skip
async def whep_session_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, SESSION_METHODS, accept_post=False)


@api.route(
    "POST", "/api/talk/{unit_id}", summary="Talk to a unit, push-to-talk (WHIP-like, body: SDP offer with the "
    "operator's microphone); one talker per unit", tag="media", access=VIEWERS, status=201,
    errors=VIEW_ERRORS,
)  # fmt: skip
async def talk_start(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, caller, unit.court_id)
    offer = await read_offer(request)
    if (elsewhere := await on_unit_node(request, unit.id, offer.encode())) is not None:
        return elsewhere
    await limited(request, f"user {caller.user.id}")
    answered = await request.app[MEDIA].talk(_viewer(request), unit.id, offer)
    return sdp_created(request, answered, f"/api/talk/{unit.id}/{answered.id}", f"user{caller.user.id}")


@api.route(
    "OPTIONS", "/api/talk/{unit_id}", summary="What the talkback endpoint takes (Accept-Post) and CORS preflight",
    tag="media", access=None, status=204,
)  # fmt: skip
async def talk_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, ENDPOINT_METHODS, accept_post=True)


@api.route(
    "OPTIONS", "/api/talk/{unit_id}/{session_id}", summary="What a talkback session takes (Accept-Patch) and CORS "
    "preflight", tag="media", access=None, status=204,
)  # fmt: skip
async def talk_session_options(request: web.Request) -> web.StreamResponse:
    return preflight(request, SESSION_METHODS, accept_post=False)


@api.route(
    "PATCH", "/api/talk/{unit_id}/{session_id}", summary="Trickle ICE candidates or restart ICE of a talkback "
    "(body: trickle-ice-sdpfrag, If-Match: the session's ETag)", tag="media", access=VIEWERS, status=204,
    errors=PATCH_ERRORS,
)  # fmt: skip
async def talk_patch(request: web.Request) -> web.StreamResponse:
    return await _patch_own(request, Role.TALKER)


@api.route(
    "DELETE", "/api/talk/{unit_id}/{session_id}", summary="Stop talking (release push-to-talk)", tag="media",
    access=VIEWERS, errors=(NotFound, TooManyRequests),
)  # fmt: skip
async def talk_end(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    unit_id = UnitId(request.match_info["unit_id"])
    if (elsewhere := await on_unit_node(request, unit_id)) is not None:
        return elsewhere
    await limited(request, f"user {caller.user.id}")
    await request.app[MEDIA].end_talk(caller.user.id, unit_id, SessionId(request.match_info["session_id"]))
    return web.Response(status=200)


async def _gb_live(request: web.Request, unit: Unit, *, hold: bool = False) -> None:
    """A GB/T 28181 unit streams only when asked: INVITE its device now (nothing for other units); ``hold``
    keeps its video while it is recorded, not only while watched."""
    if (live := request.app.get(GB_LIVE)) is not None:
        await live.ensure(unit, hold=hold)


async def _patch_own(request: web.Request, role: Role) -> web.StreamResponse:
    """PATCH the caller's own view or talkback, on the process holding it."""
    caller = current_user(request)
    unit_id = UnitId(request.match_info["unit_id"])
    body = await read_fragment(request)
    if (elsewhere := await on_unit_node(request, unit_id, body)) is not None:
        return elsewhere
    await limited(request, f"user {caller.user.id}")
    hub = request.app[MEDIA]
    session = hub.session(role, unit_id, SessionId(request.match_info["session_id"]), caller.user.id)
    return patched(await hub.patch(session, request.headers.get("If-Match"), body))


class RecordingOut(BaseModel):
    unit_id: str
    recording: bool


class SegmentList(BaseModel):
    segments: list[dict[str, Any]]
    next_after: int | None = Field(description="pass as ?after= for the next page; null when this page is the last")


MAX_SEGMENTS_PAGE = 500


@api.route(
    "POST", "/api/units/{unit_id}/recording", summary="Start recording a unit's live session as evidence",
    tag="media", access=VIEWERS, response=RecordingOut, errors=(NotFound, Conflict),
)  # fmt: skip
async def recording_start(request: web.Request) -> web.StreamResponse:
    unit = await _visible(request)
    if (elsewhere := await on_unit_node(request, unit.id)) is not None:
        return elsewhere
    await _gb_live(request, unit, hold=True)
    if not request.app[MEDIA].start_recording(unit.id, reason=f"started by {current_user(request).user.username}"):
        raise NotStreaming(f"unit {unit.id} is not streaming")
    return json_response(RecordingOut(unit_id=unit.id, recording=True))


@api.route(
    "DELETE", "/api/units/{unit_id}/recording", summary="Stop recording (the last segment is hashed and audited)",
    tag="media", access=VIEWERS, response=RecordingOut, errors=(NotFound, Conflict),
)  # fmt: skip
async def recording_stop(request: web.Request) -> web.StreamResponse:
    unit = await _visible(request)
    if (elsewhere := await on_unit_node(request, unit.id)) is not None:
        return elsewhere
    if not await request.app[MEDIA].stop_recording(unit.id):
        raise Conflict(f"unit {unit.id} is not being recorded")
    return json_response(RecordingOut(unit_id=unit.id, recording=False))


@api.route(
    "GET", "/api/units/{unit_id}/recordings", summary="A unit's recorded segments, as the audit chain vouches for "
    "them, oldest first, a page at a time (?limit=1..500, default 100; ?after=<audit_seq> from next_after)",
    tag="media", access=VIEWERS, response=SegmentList, errors=(NotFound,),
)  # fmt: skip
async def recordings(request: web.Request) -> web.StreamResponse:
    """An indexed read of the unit's segment entries (migration 030), not a scan of the whole chain; the unit is
    taken from each entry's hashed details, the index column only finds the rows."""
    unit = await _visible(request)
    limit = bounded_int(request, "limit", default=100, low=1, high=MAX_SEGMENTS_PAGE)
    after = bounded_int(request, "after", default=0, low=0, high=MAX_EPOCH_MS)
    entries = await request.app[STORE].unit_audit_entries(unit.id, SEGMENT_ACTION, after_seq=after, limit=limit)
    segments = [e.details | {"audit_seq": e.seq} for e in entries if e.details.get("unit_id") == unit.id]
    next_after = entries[-1].seq if len(entries) == limit else None
    return json_response(SegmentList(segments=segments, next_after=next_after))


async def _visible(request: web.Request) -> Unit:
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_user(request), unit.court_id)
    return unit


class StreamingOut(BaseModel):
    unit_ids: list[str]


@api.route(
    "GET", "/api/media/streaming", summary="Units of the caller's courts streaming now (on any server process), "
    "and GB/T 28181 devices registered here, whose video starts when watched", tag="media", access=VIEWERS,
    response=StreamingOut,
)  # fmt: skip
async def streaming(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    courts = await visible_courts(store, current_user(request))
    candidates = [u.id for u in await store.list_units(courts)]
    live = request.app[MEDIA].streaming_units()
    if (gb := request.app.get(GB_LIVE)) is not None:
        live |= gb.watchable()
    try:
        held = await request.app[CLUSTER].holders([media_lease(unit_id) for unit_id in candidates])
    except Exception:  # Redis is away: the units streaming to this process are still known
        log.warning("media: other processes' streams unknown (Redis unavailable)", exc_info=True)
        held = [None] * len(candidates)
    units = [unit_id for unit_id, holder in zip(candidates, held, strict=True) if unit_id in live or holder]
    return json_response(StreamingOut(unit_ids=units))
