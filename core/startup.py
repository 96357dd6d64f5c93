"""Start-up waits that cannot hang: a component's background task says when it is ready, or why it is not.

A task that must subscribe before the server may answer (geofence changes, the tracker's replication) sets a
future once it is listening; if it fails first, nothing would ever set it and the server would wait forever
without listening and without a word. ``ready_or_failed`` waits for whichever comes first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.errors import StartupFailed


async def ready_or_failed(ready: asyncio.Future[None], task: asyncio.Task[Any], what: str) -> None:
    """Return once ``ready`` is set; raise ``StartupFailed`` (naming ``what`` and the cause) if ``task`` ends first."""
    await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        return
    if task.cancelled():
        raise StartupFailed(f"{what}: stopped before it was ready")
    error = task.exception()
    if error is None:
        raise StartupFailed(f"{what}: ended before it was ready")
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    raise StartupFailed(f"{what}: {detail}") from error
