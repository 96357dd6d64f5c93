"""The cleanup context of live media: one ``MediaHub`` per process, every peer connection closed on shutdown.

Kept apart from ``app.py`` so the app factory gains one line. Views are recorded in the audit log of
the asset-query work (``query_control.audit``), so it runs after that context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from command_center.keys import AUDIT, MEDIA, TRACKER
from config.settings import MediaSettings
from media.sessions import MediaHub


def media_ctx(settings: MediaSettings, recordings: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = MediaHub(settings, app[TRACKER].ingest, app[AUDIT], recordings=recordings)
        await hub.start()
        app[MEDIA] = hub
        try:
            yield
        finally:
            await hub.close()

    return ctx
