"""GB/T 28181 units: their signalling state, the channels (cameras) their catalog listed, and how each sends
its RTP (changed by an admin, audited)."""

from __future__ import annotations

import time

from aiohttp import web

from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import GbChannelOut, GbDeviceIn, GbDeviceOut
from command_center.auth import PEOPLE, Access, current_caller, current_user
from command_center.keys import AUDIT, GB28181, SETTINGS, STORE
from core.errors import NotFound
from core.ids import UnitId, UserId
from courts.visibility import require_visible
from gb28181.enrol import rtp_transport
from persistence.gb_port import GbDevice

api = Registry()
ADMIN = frozenset({Access.ADMIN})


@api.route(
    "GET",
    "/api/units/{unit_id}/gb28181",
    summary="A GB/T 28181 unit's registration, RTP transport and channels",
    tag="directory",
    access=PEOPLE,
    response=GbDeviceOut,
    errors=(NotFound,),
)
async def gb_device(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_caller(request), unit.court_id)
    device = await store.gb_device_of(unit.id)
    if device is None:
        raise NotFound(f"unit {unit.id} is not a GB/T 28181 device")
    return json_response(await _out(request, device))


@api.route(
    "PATCH",
    "/api/units/{unit_id}/gb28181",
    summary="Change how a GB/T 28181 unit sends RTP (udp, tcp-passive, or null for the platform's setting); "
    "its next INVITE uses it (audited)",
    tag="directory",
    access=ADMIN,
    body=GbDeviceIn,
    response=GbDeviceOut,
    errors=(NotFound,),
)
async def gb_device_update(request: web.Request) -> web.StreamResponse:
    data = body(request, GbDeviceIn)
    store = request.app[STORE]
    unit = await store.get_unit(UnitId(request.match_info["unit_id"]))
    await require_visible(store, current_caller(request), unit.court_id)
    device = await store.set_gb_rtp_transport(unit.id, data.rtp_transport)
    await request.app[AUDIT].record("gb28181.device.update", UserId(current_user(request).user.id),
                                    details={"unit_id": unit.id, "device_id": device.device_id,
                                             "rtp_transport": data.rtp_transport})  # fmt: skip
    return json_response(await _out(request, device))


async def _out(request: web.Request, device: GbDevice) -> GbDeviceOut:
    service = request.app.get(GB28181)
    registration = None if service is None else service.registration(device.unit_id)
    channels = await request.app[STORE].gb_channels(device.unit_id)
    return GbDeviceOut(
        unit_id=device.unit_id,
        device_id=device.device_id,
        rtp_transport=rtp_transport(device, request.app[SETTINGS].gb28181),
        rtp_transport_own=device.rtp_transport is not None,
        registered=registration is not None,
        transport=None if registration is None else registration.peer.transport,
        address=None if registration is None else "{}:{}".format(*registration.peer.address),
        expires_in_seconds=None if registration is None else round(registration.expires_at - time.time(), 1),
        channels=[GbChannelOut.model_validate(c, from_attributes=True) for c in channels],
    )
