"""The cleanup context of GB/T 28181 signalling: the SIP registrar's sockets, started only when enabled.

Kept apart from ``app.py`` so the app factory gains one line. It runs after the tracking context, since a
device's keepalives, positions and alarms go through the tracker, and after the revocation context, which
ends a revoked unit's registration, and after the media context: a GB unit's live video goes to its hub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from alarms.models import Alarm, AlarmKind
from command_center.auth import DeviceCaller
from command_center.keys import ALARMS, GB28181, GB_LIVE, MEDIA, REVOCATIONS, STORE, TRACKER
from config.settings import Gb28181Settings
from gb28181.enrol import keepalive_silence
from gb28181.media.live import LiveStreams
from gb28181.service import GbService
from gb28181.transport import SipServer
from persistence.models import Unit


def gb28181_ctx(settings: Gb28181Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not settings.enabled:
            yield
            return
        revocations = app[REVOCATIONS]

        def watch(unit: Unit, end: Callable[[], None]) -> Callable[[], None]:
            """A registration is a live connection of the unit's credential: revoking the unit, on any
            process or from the CLI (the registry's recheck), ends it like the unit's sockets."""

            async def close(code: int, reason: str) -> None:
                end()

            return revocations.watch(DeviceCaller(unit), close).release

        service = GbService(settings, app[STORE], app[TRACKER], watcher=watch)
        idle = keepalive_silence(settings) + 30  # a device silent for its missed keepalives is offline
        server = SipServer(service, settings.sip_host, settings.sip_port, idle_seconds=idle)
        hub = app[MEDIA]
        live = LiveStreams(settings, service, hub, app[STORE], host=settings.sip_host)

        def record_sos(alarm: Alarm) -> None:
            """An SOS from a GB unit opens its video and records it, as the media context does for WHIP units."""
            if alarm.kind is AlarmKind.SOS and alarm.unit_id is not None:
                live.open_and_record(alarm.unit_id, f"SOS alarm {alarm.id}",
                                     lambda unit_id, reason: hub.start_recording(unit_id, reason=reason))  # fmt: skip

        await service.start()
        await live.start()
        app[ALARMS].on_raised.append(record_sos)
        try:
            await server.start()
            service.sip_port = server.port
            app[GB28181], app[GB_LIVE] = service, live
            yield
        finally:
            app[ALARMS].on_raised.remove(record_sos)
            await live.close()
            await server.close()
            await service.close()

    return ctx
