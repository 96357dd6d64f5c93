"""The cleanup context of point-to-point asset queries: agencies, gateway, broker, follow-ups, resume.

Kept apart from ``app.py`` so the app factory gains one line. On start it resumes every query and
follow-up a previous process left pending (the store is the record of what was promised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from command_center.keys import AGENCIES, AUDIT, BROKER, BUS, CLUSTER, FOLLOWUPS, GATEWAY, HUB, METRICS, SETTINGS, STORE
from config.settings import QuerySettings
from query_control.agencies import AgencyConfig, load_agencies
from query_control.audit import AuditLog
from query_control.broker import Broker
from query_control.followups import FollowUps
from query_control.gateway import AgencyGateway

log = logging.getLogger(__name__)


def query_control_ctx(
    settings: QuerySettings, agencies: list[AgencyConfig] | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        configured = agencies if agencies is not None else load_agencies(settings.agencies_file)
        async with AsyncExitStack() as stack:
            gateway = AgencyGateway(configured)
            await gateway.start()
            stack.push_async_callback(gateway.close)
            audit = AuditLog(app[STORE])
            cluster = app[CLUSTER]
            broker = Broker(app[STORE], app[BUS], gateway, deadline_seconds=settings.deadline_seconds, cluster=cluster,
                            on_feedback=app[METRICS].feedback_seconds.observe)  # fmt: skip
            stack.push_async_callback(broker.close)
            followups = FollowUps(app[STORE], app[BUS], gateway, audit, cluster=cluster)
            stack.push_async_callback(followups.close)
            app[AGENCIES], app[GATEWAY], app[AUDIT], app[BROKER], app[FOLLOWUPS] = (
                configured,
                gateway,
                audit,
                broker,
                followups,
            )
            hub: Any = app.get(HUB)
            if hub is not None:
                hub.agency_names = {a.id: a.name for a in configured}
                hub.audit = audit
            resumed = await broker.resume_pending()
            reopened = await followups.resume_pending()
            if resumed or reopened:
                log.info("asset queries: resumed %d queries and %d follow-ups", resumed, reopened)
            if cluster.shared:  # take over the queries of a process that died (their leases lapse)
                adopter = asyncio.create_task(_adopt_forever(broker, followups, app[SETTINGS].cluster.lease_seconds))
                stack.push_async_callback(_cancel, adopter)
            yield

    return ctx


async def _adopt_forever(broker: Broker, followups: FollowUps, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            adopted = await broker.resume_pending()
            adopted_followups = await followups.resume_pending()
        except Exception:
            log.exception("asset queries: looking for queries to take over failed")
            continue
        if adopted or adopted_followups:
            log.warning("asset queries: took over %d queries and %d follow-ups of a stopped process",
                        adopted, adopted_followups)  # fmt: skip


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
