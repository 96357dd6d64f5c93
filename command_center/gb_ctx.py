"""The cleanup context of GB/T 28181 signalling: the SIP registrar's sockets, started only when enabled.

Kept apart from ``app.py`` so the app factory gains one line. It runs after the tracking context, since a
device's keepalives, positions and alarms go through the tracker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from command_center.keys import GB28181, STORE, TRACKER
from config.settings import Gb28181Settings
from gb28181.enrol import keepalive_silence
from gb28181.service import GbService
from gb28181.transport import SipServer


def gb28181_ctx(settings: Gb28181Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not settings.enabled:
            yield
            return
        service = GbService(settings, app[STORE], app[TRACKER])
        idle = keepalive_silence(settings) + 30  # a device silent for its missed keepalives is offline
        server = SipServer(service, settings.sip_host, settings.sip_port, idle_seconds=idle)
        await service.start()
        try:
            await server.start()
            service.sip_port = server.port
            app[GB28181] = service
            yield
        finally:
            await server.close()
            await service.close()

    return ctx
