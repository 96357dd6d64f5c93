"""The app factory: the one place where settings become a running aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from alarms.desk import AlarmDesk
from cluster.factory import build_coordinator
from cluster.port import LEADER
from command_center.api.registry import Registry, openapi_document
from command_center.api.reports import report_pool_ctx
from command_center.api.routes import all_endpoints
from command_center.audit_ctx import audit_ctx
from command_center.credentials import Passwords, VerifyGate, verify_threads
from command_center.gb_ctx import gb28181_ctx
from command_center.idle_sockets import IdleSockets, idle_sockets_ctx
from command_center.keys import (
    ALARMS,
    BUS,
    CLUSTER,
    GEOFENCES,
    HTTP_CLIENT,
    HUB,
    IDLE_UNIT_SOCKETS,
    LOGIN_GATE,
    LOGIN_THROTTLE,
    OPENAPI,
    OPERATIONS,
    PASSWORDS,
    SETTINGS,
    STORE,
    TASKS,
    TRACKER,
    WRITER,
)
from command_center.loop_lag import loop_lag_ctx
from command_center.media_ctx import media_ctx
from command_center.middleware import body_in_time, errors_as_json, same_origin_websockets, security_headers
from command_center.pages import install_pages
from command_center.queries_ctx import query_control_ctx
from command_center.revocation_ctx import revocation_ctx
from command_center.screens.hub import ScreenHub
from command_center.throttle import LocalLoginGuard
from config.settings import Settings
from core.startup import ready_or_failed
from event_bus.factory import build_bus
from field_units.geofence_watch import GeofenceWatch
from field_units.tasks import TaskDesk
from field_units.tracker import Tracker
from field_units.writer import PositionWriter
from operations.desk import OperationDesk
from persistence.factory import build_store
from query_control.agencies import AgencyConfig

log = logging.getLogger(__name__)

API_TITLE = "执行指挥中心 Enforcement Command Centre API"


def create_app(
    settings: Settings, *, store_schema: str | None = None, agencies: list[AgencyConfig] | None = None
) -> web.Application:
    """Build the application; nothing connects until it starts (cleanup contexts own every resource).

    ``store_schema`` places PostgreSQL tables in a schema of their own (used by tests); ``agencies``
    replaces the configured partner agencies (tests point them at simulators on ephemeral ports).
    """
    app = web.Application(
        middlewares=[security_headers, errors_as_json, same_origin_websockets, body_in_time],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[PASSWORDS] = Passwords(settings.auth)
    registry = Registry(all_endpoints())
    registry.install(app)
    app[OPENAPI] = openapi_document(registry, title=API_TITLE, version="1")
    install_pages(app)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = build_store(settings.store, schema=store_schema)
        await store.open()
        try:
            applied = await store.migrate()
            if applied:
                log.info("store: applied migrations %s", applied)
            app[STORE] = store
            yield
        finally:
            await store.close()

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        bus = build_bus(settings.bus)
        await bus.start()
        app[BUS] = bus
        try:
            yield
        finally:
            await bus.close()

    async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
        cluster = build_coordinator(settings)
        await cluster.start()
        cluster.want(LEADER)
        app[CLUSTER] = cluster
        app[HTTP_CLIENT] = aiohttp.ClientSession()  # requests to the other processes (forwarding)
        if cluster.shared:  # a guesser must not get five tries per process
            from command_center.shared_throttle import RedisLoginGuard

            shared = RedisLoginGuard(settings.bus.url, namespace=settings.bus.namespace)
            app[LOGIN_THROTTLE] = shared
        else:
            app[LOGIN_THROTTLE] = LocalLoginGuard()
        try:
            yield
        finally:
            if cluster.shared:
                await shared.close()
            await app[HTTP_CLIENT].close()
            await cluster.close()

    async def tracking_ctx(app: web.Application) -> AsyncIterator[None]:
        writer = PositionWriter(app[STORE], max_pending=settings.tracking.max_pending_positions)
        alarms = AlarmDesk(app[STORE], app[BUS])
        geofences = GeofenceWatch(app[STORE], alarms, fixes=settings.tracking.geofence_fixes,
                                  seconds=settings.tracking.geofence_seconds)  # fmt: skip
        await geofences.reload()
        cluster = app[CLUSTER]
        tracker = Tracker(app[STORE], app[BUS], writer, settings.tracking, alarms, geofences=geofences,
                          cluster=cluster)  # fmt: skip
        tasks = TaskDesk(app[STORE], app[BUS], alarms, cluster=cluster)
        operations = OperationDesk(app[STORE], app[BUS], tasks)
        hub = ScreenHub(app[STORE], app[BUS], settings.tracking)
        async with contextlib.AsyncExitStack() as starting:  # a failure below stops what was started
            await writer.start()
            starting.push_async_callback(writer.close)
            await tracker.start()
            starting.push_async_callback(tracker.close)
            await tasks.start()
            starting.push_async_callback(tasks.close)
            await hub.start()
            starting.push_async_callback(hub.close)
            fences_ready = asyncio.get_running_loop().create_future()
            follow_fences = asyncio.create_task(geofences.follow_changes(app[BUS], cluster.node_id, fences_ready))
            starting.push_async_callback(_stop, follow_fences)
            await ready_or_failed(fences_ready, follow_fences, "geofences: following changes")
            starting.pop_all()
        app[WRITER], app[TRACKER], app[HUB], app[ALARMS], app[TASKS] = writer, tracker, hub, alarms, tasks
        app[OPERATIONS], app[GEOFENCES] = operations, geofences
        try:
            yield
        finally:
            follow_fences.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow_fences
            await hub.close()
            await tasks.close()
            await tracker.close()
            await writer.close()

    async def login_gate_ctx(app: web.Application) -> AsyncIterator[None]:
        auth = settings.auth
        gate = VerifyGate(app[PASSWORDS], workers=auth.verify_workers or verify_threads(), waiting=auth.verify_waiting,
                          per_address=auth.verify_per_address)  # fmt: skip
        app[LOGIN_GATE] = gate
        try:
            yield
        finally:
            gate.close()

    app.cleanup_ctx.extend([store_ctx, bus_ctx, cluster_ctx, tracking_ctx])
    app.cleanup_ctx.append(login_gate_ctx)
    app.cleanup_ctx.append(query_control_ctx(settings.queries, agencies))
    app.cleanup_ctx.append(media_ctx(settings.media, settings.data_dir / "recordings"))
    app.cleanup_ctx.append(audit_ctx(settings.audit, settings.data_dir))
    app.cleanup_ctx.append(report_pool_ctx(settings.maps))
    app.cleanup_ctx.append(revocation_ctx(settings))
    app.cleanup_ctx.append(gb28181_ctx(settings.gb28181))
    app.cleanup_ctx.append(loop_lag_ctx(settings.server.loop_lag_file))
    app[IDLE_UNIT_SOCKETS] = IdleSockets(settings.server.unit_socket_idle_seconds)
    app.cleanup_ctx.append(idle_sockets_ctx(app[IDLE_UNIT_SOCKETS]))
    return app


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed start is reported by whoever awaited it
        await task
