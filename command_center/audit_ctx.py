"""The cleanup context of the audit checkpointer (signed checkpoints to the witnesses, leader only).

Kept apart from ``app.py`` so the app factory gains one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from command_center.keys import CHECKPOINTER, CLUSTER, HTTP_CLIENT, STORE
from config.settings import AuditSettings
from query_control.checkpoints import Checkpointer

log = logging.getLogger(__name__)


def _same_volume(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def audit_ctx(settings: AuditSettings, data_dir: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sink = settings.witness_file
        if sink is not None and _same_volume(sink.parent, data_dir):
            log.warning("audit.witness_file %s is on the data dir's volume: whoever can rewrite one can rewrite both",
                        sink)  # fmt: skip
        checkpointer = Checkpointer(app[STORE], settings, data_dir, app[CLUSTER], app[HTTP_CLIENT])
        app[CHECKPOINTER] = checkpointer
        await checkpointer.start()
        try:
            yield
        finally:
            await checkpointer.close()

    return ctx
