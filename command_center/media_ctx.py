"""The cleanup context of live media: one ``MediaHub`` per process, every peer connection closed on shutdown.

Kept apart from ``app.py`` so the app factory gains one line. Views are recorded in the audit log of
the asset-query work (``query_control.audit``), so it runs after that context; an SOS alarm starts the
unit's recording, so it runs after the tracking context too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from alarms.models import Alarm, AlarmKind
from command_center.keys import ALARMS, AUDIT, CLUSTER, MEDIA, TRACKER
from command_center.media_http import MEDIA_RATES, MediaRates
from config.settings import MediaSettings
from media.sessions import MediaHub


def media_ctx(settings: MediaSettings, recordings: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = MediaHub(settings, app[TRACKER].ingest, app[AUDIT], recordings=recordings, cluster=app[CLUSTER])
        try:
            await hub.start()
        except BaseException:  # e.g. recovering a crashed recording failed: stop the supervisor it started
            await hub.close()
            raise
        app[MEDIA] = hub
        app[MEDIA_RATES] = rates = MediaRates(settings.requests_per_minute)

        def record_sos(alarm: Alarm) -> None:
            """An SOS from a unit that streams starts its recording at once (evidence of what happened)."""
            if alarm.kind is AlarmKind.SOS and alarm.unit_id is not None:
                hub.start_recording(alarm.unit_id, reason=f"SOS alarm {alarm.id}")

        app[ALARMS].on_raised.append(record_sos)
        try:
            yield
        finally:
            app[ALARMS].on_raised.remove(record_sos)
            await hub.close()
            rates.close()

    return ctx
