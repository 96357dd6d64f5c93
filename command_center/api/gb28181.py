"""GB/T 28181 units: their signalling state and the channels (cameras) their catalog listed."""

from __future__ import annotations

import time

from aiohttp import web

from command_center.api.registry import Registry, json_response
from command_center.api.schemas import GbChannelOut, GbDeviceOut
from command_center.auth import PEOPLE, current_caller
from command_center.keys import GB28181, STORE
from core.errors import NotFound
from core.ids import UnitId
from courts.visibility import require_visible

api = Registry()


@api.route(
    "GET",
    "/api/units/{unit_id}/gb28181",
    summary="A GB/T 28181 unit's registration and channels",
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
    service = request.app.get(GB28181)
    registration = None if service is None else service.registration(unit.id)
    channels = [GbChannelOut.model_validate(c, from_attributes=True) for c in await store.gb_channels(unit.id)]
    return json_response(
        GbDeviceOut(
            unit_id=unit.id,
            device_id=device.device_id,
            registered=registration is not None,
            transport=None if registration is None else registration.peer.transport,
            address=None if registration is None else "{}:{}".format(*registration.peer.address),
            expires_in_seconds=None if registration is None else round(registration.expires_at - time.time(), 1),
            channels=channels,
        )
    )
