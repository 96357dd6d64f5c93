"""The screen socket: wall displays and consoles (docs/protocols.md)."""

from __future__ import annotations

from aiohttp import web

from command_center.api.registry import Registry
from command_center.auth import PEOPLE, current_caller
from command_center.keys import HUB

api = Registry()


@api.route(
    "GET",
    "/api/screen/ws",
    summary="Live units and alarms for a screen (WebSocket; ?token= for browsers)",
    tag="screens",
    access=PEOPLE,
)
async def screen_socket(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].serve(request, current_caller(request))
