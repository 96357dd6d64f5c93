"""Telemetry transports for field units (docs/protocols.md) and the operator's status commands.

Both transports call the same ``Tracker.ingest``: one validation, one dedupe, one answer shape. The
WebRTC data channel of the media work will call it too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Annotated, Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, Field

from command_center.api.params import epoch_ms
from command_center.api.registry import Registry, body, json_response
from command_center.auth import PEOPLE, Access, DeviceCaller, current_caller, current_device
from command_center.keys import IDLE_UNIT_SOCKETS, REVOCATIONS, STORE, TASKS, TRACKER
from command_center.unit_socket import UnitSocket
from core import log_context
from core.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, ValidationFailed
from core.ids import UnitId
from courts.visibility import require_visible
from field_units.messages import MAX_MESSAGE
from field_units.tracker import MAX_BATCH
from maps.tracks import MAX_SHOWN_POINTS, read_track, simplify_within
from persistence.models import Duty

log = logging.getLogger(__name__)

api = Registry()

DEVICE = frozenset({Access.DEVICE})
COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_TRACK_MS = 24 * 3_600_000
MAX_WS_MESSAGE = MAX_MESSAGE
SOCKET_ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)  # where ``async for`` over a socket stops


class TelemetryBatchIn(BaseModel):
    positions: Annotated[list[Any], Field(max_length=MAX_BATCH, description="position objects, oldest first")]


class RejectedOut(BaseModel):
    index: int
    seq: int | None
    code: str
    message: str


class AckOut(BaseModel):
    type: str = "ack"
    stored: list[int]
    duplicates: list[int]
    rejected: list[RejectedOut]


@api.route(
    "GET", "/api/telemetry/ws", summary="Live telemetry from a field unit (WebSocket)", tag="telemetry", access=DEVICE
)
async def telemetry_socket(request: web.Request) -> web.StreamResponse:
    caller = current_device(request)
    unit = caller.unit
    # No aiohttp heartbeat (it re-arms a timer on every message): silent sockets are pinged and cut by one
    # sweep over all of them (command_center/idle_sockets.py), which sees the pongs because we take them.
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_WS_MESSAGE, autoping=False)
    await ws.prepare(request)
    with log_context.bound(unit_id=unit.id, connection_id=secrets.token_hex(4)):
        # A task of its own (context copied, cancelled with this one): every message resumes the socket's
        # coroutine twice (received, committed), and from here each resume would go down through the
        # request handler and a dozen middleware frames first.
        return await asyncio.create_task(_serve_unit(request, caller, ws), name=f"unit-socket:{unit.id}")


async def _serve_unit(request: web.Request, caller: DeviceCaller, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    unit = caller.unit
    tasks = request.app[TASKS]
    log.info("unit %s: telemetry socket open from %s", unit.id, request.remote)
    # Revoking the unit closes this socket (4401); ``watch.ended`` is set first, so nothing more is stored.
    watch = request.app[REVOCATIONS].watch_socket(caller, ws)
    idle = request.app[IDLE_UNIT_SOCKETS]
    transport = request.transport
    messages = UnitSocket(ws, transport, unit, request.app[TRACKER], tasks.report)
    handle = messages.handle

    async def push(message: dict[str, Any]) -> None:
        if ws.closed:
            raise ConnectionError("the unit's socket is closed")
        await ws.send_frame(orjson.dumps(message), WSMsgType.TEXT)

    try:
        with idle.watching(ws, abort=transport.abort if transport is not None else lambda: None):
            async with tasks.channel(unit, push):
                # ``receive`` in a loop, not ``async for`` (whose ``__anext__`` is a coroutine more per message), and
                # the message let go before the next is awaited: between messages every idle socket held both,
                # and a collector pass walked 10,000 of each among the ~130,000 objects it took 50 ms over.
                while True:
                    message = await ws.receive()
                    if message.type in SOCKET_ENDED:
                        break
                    idle.heard(ws)
                    if watch.ended:
                        break
                    if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        waiting = handle(message.data)  # nearly always taken at once, answered from its commit
                        if waiting is not None:
                            await waiting
                    elif message.type is WSMsgType.PING:  # autoping is off: answer the unit's pings here
                        await ws.pong(message.data)
                    del message
    except ConnectionError:
        pass  # the unit went away while we wrote to it
    except Exception:  # never an HTTP error on an upgraded connection: close it properly instead
        log.exception("unit %s: telemetry socket failed", unit.id)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
    finally:
        await watch.settle()
    log.info("unit %s: telemetry socket closed (%s)", unit.id, ws.close_code)
    return ws


@api.route(
    "POST",
    "/api/telemetry/batch",
    summary="Upload positions recorded while offline",
    tag="telemetry",
    access=DEVICE,
    body=TelemetryBatchIn,
    response=AckOut,
    errors=(ServiceUnavailable,),
)
async def telemetry_batch(request: web.Request) -> web.StreamResponse:
    unit = current_device(request).unit
    ack = await request.app[TRACKER].ingest(unit, body(request, TelemetryBatchIn).positions)
    return json_response(ack.as_dict())


class DutyIn(BaseModel):
    duty: Duty


class UnitLiveOut(BaseModel):
    unit_id: str
    name: str
    kind: str
    court_id: str
    status: str
    position: dict[str, Any] | None
    last_seen_ms: int | None


@api.route(
    "GET",
    "/api/units/{unit_id}/live",
    summary="A unit's live status and newest position (as every server process sees it)",
    tag="tracking",
    access=COMMANDERS,
    response=UnitLiveOut,
    errors=(NotFound,),
)
async def live(request: web.Request) -> web.StreamResponse:
    unit_id = await _visible_unit(request)
    return json_response(await request.app[TRACKER].live_view(unit_id))


@api.route(
    "POST",
    "/api/units/{unit_id}/duty",
    summary="Set a unit's duty (dispatch, arrived, released)",
    tag="tracking",
    access=COMMANDERS,
    body=DutyIn,
    response=UnitLiveOut,
    errors=(NotFound, Conflict),
)
async def set_duty(request: web.Request) -> web.StreamResponse:
    unit_id = await _visible_unit(request)
    await request.app[TRACKER].set_duty(unit_id, body(request, DutyIn).duty)
    return json_response(request.app[TRACKER].view(unit_id))


@api.route(
    "POST",
    "/api/units/{unit_id}/clear-sos",
    summary="Clear a unit's SOS once it is handled",
    tag="tracking",
    access=COMMANDERS,
    response=UnitLiveOut,
    errors=(NotFound, Conflict),
)
async def clear_sos(request: web.Request) -> web.StreamResponse:
    unit_id = await _visible_unit(request)
    await request.app[TRACKER].clear_sos(unit_id)
    return json_response(request.app[TRACKER].view(unit_id))


class TrackOut(BaseModel):
    unit_id: str
    points: list[dict[str, Any]]
    raw_points: int = Field(description="positions stored in the period (before simplification)")
    simplified_m: float = Field(
        0.0,
        description="the Douglas–Peucker tolerance the points were simplified with (0: every stored point); "
        f"a period of more than {MAX_SHOWN_POINTS} points is simplified until it fits, never cut short",
    )


@api.route(
    "GET",
    "/api/units/{unit_id}/track",
    summary="A unit's positions in a window (?since_ms&until_ms, at most 24 h; &simplify_m=5 for display)",
    tag="tracking",
    access=PEOPLE,
    response=TrackOut,
    errors=(NotFound,),
)
async def track(request: web.Request) -> web.StreamResponse:
    unit_id = await _visible_unit(request)
    now = int(time.time() * 1000)
    until = epoch_ms(request, "until_ms", default=now + 1)
    since = epoch_ms(request, "since_ms", default=max(0, until - 3_600_000))
    try:
        tolerance = float(request.query.get("simplify_m", "0"))
    except ValueError:
        raise BadRequest("simplify_m must be a number (metres)") from None
    if not 0 < until - since <= MAX_TRACK_MS:
        raise ValidationFailed(f"the period must be positive and at most {MAX_TRACK_MS // 3_600_000} hours")
    if not 0 <= tolerance <= 1000:
        raise ValidationFailed("simplify_m must be from 0 (every point) to 1000 metres")
    positions = await read_track(request.app[STORE], unit_id, since_ms=since, until_ms=until)
    raw = len(positions)
    # GEOS simplifies with the GIL released: a day of fixes takes it a second, which the loop must not wait
    kept, used = await asyncio.to_thread(simplify_within, [(p.lat, p.lon) for p in positions], MAX_SHOWN_POINTS,
                                         tolerance)  # fmt: skip
    if used > 0:
        positions = [positions[i] for i in kept]
    out = TrackOut(unit_id=unit_id, points=[p.view() for p in positions], raw_points=raw, simplified_m=used)
    return json_response(out)


async def _visible_unit(request: web.Request) -> UnitId:
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_caller(request), unit.court_id)
    return unit.id
