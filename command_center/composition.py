"""The composition root: what the server runs, in what order, and how it stops.

``components`` reads top to bottom. Each step builds one component from the collaborators it names (passed
to its constructor, never set on it afterwards), starts it, registers how it stops on one exit stack, and
publishes it under its typed app key for the routes. Stopping runs the stack: the reverse of the start.
A step that fails unwinds every step before it, and the error names what failed (``core.startup``).

To add a component: write one ``_start_<name>`` step below, in the section where its collaborators already
exist, and call it in ``components`` in that place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from alarms.desk import AlarmDesk
from alarms.models import Alarm, AlarmKind
from cluster.factory import build_coordinator
from cluster.port import LEADER, Coordinator
from cluster.processes import LocalProcesses, Processes, RedisProcesses
from command_center.auth import DeviceCaller
from command_center.credentials import Passwords, VerifyGate, verify_threads
from command_center.forwarding import HopNonces
from command_center.idle_sockets import IdleSockets
from command_center.keys import (
    AGENCIES,
    ALARMS,
    AUDIT,
    BROKER,
    BUS,
    CHECKPOINTER,
    CLUSTER,
    ENTRUSTMENT_RATES,
    ENTRUSTMENTS,
    FOLLOWUPS,
    GATEWAY,
    GB28181,
    GB28181_SIP,
    GB_LIVE,
    GEOFENCES,
    HOP_NONCES,
    HOP_SECRET,
    HTTP_CLIENT,
    HUB,
    IDLE_UNIT_SOCKETS,
    LOGIN_GATE,
    LOGIN_THROTTLE,
    MEDIA,
    METRICS,
    OPERATIONS,
    PASSWORDS,
    PINNED_VIEWS,
    PROCESSES,
    REPORTS,
    REVOCATIONS,
    ROOM_MEDIA,
    ROOMS,
    STATE,
    STORE,
    TASKS,
    TICKETS,
    TILE_ARCHIVE,
    TRACKER,
    VERIFIER,
    WRITER,
)
from command_center.loop_lag import sample_forever, watch_lag
from command_center.media_http import MEDIA_RATES, MediaRateGuard, MediaRates
from command_center.metrics import Metrics
from command_center.metrics_state import StateCollector, StateReader
from command_center.pinned_views import PinnedViews
from command_center.request_rates import Allowance, RequestRates
from command_center.revocation import Revocations
from command_center.screens.hub import ScreenHub
from command_center.stall_trace import StallTracer
from command_center.throttle import LocalLoginGuard, LoginGuard
from command_center.tickets import LocalTickets, RedisTickets, TicketBook
from config.settings import (
    AuditSettings,
    AuthSettings,
    BusSettings,
    Gb28181Settings,
    MapSettings,
    QuerySettings,
    Settings,
    StoreSettings,
    TrackingSettings,
)
from consultations.desk import RoomDesk
from core.ids import UnitId
from core.startup import ready_or_failed
from entrustments.desk import EntrustmentDesk
from event_bus.factory import build_bus
from event_bus.port import EventBus
from field_units.geofence_watch import GeofenceWatch
from field_units.tasks import TaskDesk
from field_units.tracker import Tracker
from field_units.writer import PositionWriter
from gb28181.enrol import keepalive_silence
from gb28181.media.live import LiveStreams
from gb28181.service import GbService
from gb28181.transport import SipServer
from maps.report_pool import ReportPool
from maps.tile_archive import TileArchive
from media.evidence import SEGMENT_ACTION, SegmentCheck
from media.rooms import RoomMedia
from media.sessions import MediaHub
from media.verification import SegmentVerifier
from operations.desk import OperationDesk
from persistence.factory import build_store
from persistence.models import Unit
from persistence.port import Store
from query_control.agencies import AgencyConfig, load_agencies
from query_control.audit import AuditLog
from query_control.broker import Broker
from query_control.checkpoints import Checkpointer
from query_control.followups import FollowUps
from query_control.gateway import AgencyGateway
from query_control.takeover import adopt_forever

log = logging.getLogger(__name__)

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def components(
    settings: Settings, *, store_schema: str | None = None, agencies: list[AgencyConfig] | None = None
) -> CleanupContext:
    """The app's one cleanup context: every long-lived component, started in order, stopped in reverse."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # ── foundations: storage, events, the other processes ──────────────────────────────────────
            store = await _start_store(stack, app, settings.store, store_schema)
            bus = await _start_bus(stack, app, settings.bus)
            cluster = await _start_cluster(stack, app, settings)
            http = _start_http_client(stack, app)
            _start_login_throttle(stack, app, settings.bus, shared=cluster.shared)
            audit = _audit_log(app, store)
            metrics = _metrics(app)
            configured = _agencies(app, settings.queries, agencies)

            # ── tracking and command: units, alarms, geofences, tasks, operations, screens ─────────────
            alarms = _alarm_desk(app, store, bus)
            tracker = await _start_tracking(stack, app, settings.tracking, store, bus, cluster, alarms, audit, metrics)
            await _start_screens(stack, app, settings.tracking, store, bus, configured, audit, metrics)
            await _start_entrustments(stack, app, settings, store, bus, cluster, alarms, audit)  # 执行委托
            app[ROOMS] = RoomDesk(store, audit)  # 执行会商: consultation rooms

            # ── people: password checks ───────────────────────────────────────────────────────────────
            _start_login_gate(stack, app, settings.auth)

            # ── asset queries: agencies, broker, follow-ups, the audit chain's checkpoints ──────────────
            await _start_queries(stack, app, settings, store, bus, cluster, configured, audit, metrics)
            await _start_checkpointer(stack, app, settings.audit, settings.data_dir, store, cluster, http)

            # ── media: WHIP/WHEP sessions, recording, SOS recording ───────────────────────────────────
            media = await _start_media(stack, app, settings, tracker, audit, cluster)
            _record_sos(stack, alarms, media)
            await _start_room_media(stack, app, media, bus, store, audit)
            _start_segment_verifier(stack, app, settings, store, cluster, alarms)

            # ── reports, revocation of live connections, GB/T 28181 devices ───────────────────────────
            _start_report_pool(stack, app, settings.maps.report_workers)
            _open_tile_archive(stack, app, settings.maps)
            revocations = await _start_revocations(stack, app, settings, store, bus, media, shared=cluster.shared)
            await _start_gb28181(stack, app, settings.gb28181, store, tracker, revocations, alarms, media)

            # ── diagnostics ───────────────────────────────────────────────────────────────────────────
            _start_loop_lag_probe(stack, settings.server.loop_lag_file)
            await _start_stall_trace(stack, settings.server.stall_trace_file, settings.server.stall_trace_ms)
            _start_lag_metric(stack, metrics, settings.observability.loop_lag_interval_seconds)

            # ── unit sockets: one sweep pings the silent ones and cuts those that stay silent ──────────────
            _start_idle_sweep(stack, app, settings.server.unit_socket_idle_seconds)

            # ── the cluster's list of processes (运维): this one's record, renewed ────────────────────────
            await _start_process_heartbeat(stack, app, settings, cluster)
            yield

    return run


# ── foundations ──────────────────────────────────────────────────────────────────────────────────────────


async def _start_store(
    stack: AsyncExitStack, app: web.Application, settings: StoreSettings, schema: str | None
) -> Store:
    """Opened and migrated before anything reads it (forward-only migrations, recorded in the database)."""
    store = build_store(settings, schema=schema)
    await store.open()
    stack.push_async_callback(store.close)
    applied = await store.migrate()
    if applied:
        log.info("store: applied migrations %s", applied)
    app[STORE] = store
    app[HOP_SECRET] = await store.cluster_secret()  # generated by the first process ever to start
    app[HOP_NONCES] = HopNonces()
    return store


async def _start_bus(stack: AsyncExitStack, app: web.Application, settings: BusSettings) -> EventBus:
    bus = build_bus(settings)
    await bus.start()
    stack.push_async_callback(bus.close)
    app[BUS] = bus
    return bus


async def _start_cluster(stack: AsyncExitStack, app: web.Application, settings: Settings) -> Coordinator:
    """The process's place among the others: leases, and the leader's role (sweepers run in the leader only)."""
    cluster = build_coordinator(settings)
    await cluster.start()
    stack.push_async_callback(cluster.close)
    cluster.want(LEADER)
    app[CLUSTER] = cluster
    return cluster


def _start_http_client(stack: AsyncExitStack, app: web.Application) -> aiohttp.ClientSession:
    """Requests to the other processes (forwarding) and to the audit witnesses."""
    http = aiohttp.ClientSession()
    stack.push_async_callback(http.close)
    app[HTTP_CLIENT] = http
    return http


def _start_login_throttle(stack: AsyncExitStack, app: web.Application, bus: BusSettings, *, shared: bool) -> None:
    """Shared between processes when there are several: a guesser must not get five tries per process."""
    throttle: LoginGuard
    if shared:
        from command_center.shared_throttle import RedisLoginGuard

        redis_guard = RedisLoginGuard(bus.url, namespace=bus.namespace)
        stack.push_async_callback(redis_guard.close)
        throttle = redis_guard
    else:
        throttle = LocalLoginGuard()
    app[LOGIN_THROTTLE] = throttle


def _metrics(app: web.Application) -> Metrics:
    """Prometheus metrics (``/metrics``): counters fed by the components below, the rest read when scraped."""
    metrics = Metrics()
    app[METRICS], app[STATE] = metrics, StateReader(app)
    metrics.registry.register(StateCollector(app[STATE]))
    return metrics


def _audit_log(app: web.Application, store: Store) -> AuditLog:
    """The hash-chained audit log: every query, read of results and view of a stream is appended to it."""
    audit = AuditLog(store)
    app[AUDIT] = audit
    return audit


def _agencies(app: web.Application, settings: QuerySettings, given: list[AgencyConfig] | None) -> list[AgencyConfig]:
    """The partner agencies: from the settings' file, or those given (tests point them at simulators)."""
    configured = given if given is not None else load_agencies(settings.agencies_file)
    app[AGENCIES] = configured
    return configured


# ── tracking and command ─────────────────────────────────────────────────────────────────────────────────


def _alarm_desk(app: web.Application, store: Store, bus: EventBus) -> AlarmDesk:
    alarms = AlarmDesk(store, bus)
    app[ALARMS] = alarms
    return alarms


async def _start_tracking(
    stack: AsyncExitStack,
    app: web.Application,
    settings: TrackingSettings,
    store: Store,
    bus: EventBus,
    cluster: Coordinator,
    alarms: AlarmDesk,
    audit: AuditLog,
    metrics: Metrics,
) -> Tracker:
    """Positions in (batched writes), unit states, geofences on every position, tasks and operations."""
    writer = PositionWriter(store, max_pending=settings.max_pending_positions)
    geofences = GeofenceWatch(store, alarms, fixes=settings.geofence_fixes, seconds=settings.geofence_seconds)
    await geofences.reload()
    tracker = Tracker(store, bus, writer, settings, alarms, geofences=geofences, cluster=cluster,
                      on_ack=metrics.ack_seconds.observe)  # fmt: skip
    tasks = TaskDesk(store, bus, alarms, cluster=cluster)
    operations = OperationDesk(store, bus, tasks, audit)
    await writer.start()
    stack.push_async_callback(writer.close)
    await tracker.start()
    stack.push_async_callback(tracker.close)
    await tasks.start()
    stack.push_async_callback(tasks.close)
    app[WRITER], app[TRACKER], app[GEOFENCES] = writer, tracker, geofences
    app[TASKS], app[OPERATIONS] = tasks, operations
    fences_ready = asyncio.get_running_loop().create_future()  # answer only once geofence changes are heard
    follow = asyncio.create_task(geofences.follow_changes(bus, cluster.node_id, fences_ready), name="geofences-follow")
    stack.push_async_callback(_stop, follow)
    await ready_or_failed(fences_ready, follow, "geofences: following changes")
    return tracker


async def _start_screens(
    stack: AsyncExitStack,
    app: web.Application,
    settings: TrackingSettings,
    store: Store,
    bus: EventBus,
    agencies: list[AgencyConfig],
    audit: AuditLog,
    metrics: Metrics,
) -> ScreenHub:
    """The wall displays' and consoles' WebSocket hub; agency names label query results, watching them is audited."""
    hub = ScreenHub(store, bus, settings, agency_names={a.id: a.name for a in agencies}, audit=audit, metrics=metrics)
    await hub.start()
    stack.push_async_callback(hub.close)
    app[HUB] = hub
    return hub


async def _start_entrustments(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Settings,
    store: Store,
    bus: EventBus,
    cluster: Coordinator,
    alarms: AlarmDesk,
    audit: AuditLog,
) -> EntrustmentDesk:
    """执行委托 between courts: the desk (each step on both courts' screens), its overdue sweep (leader only),
    and the request rates per user and court (in Redis when several processes share the work)."""
    desk = EntrustmentDesk(store, app[TASKS], audit, bus, alarms, cluster=cluster,
                           sweep_seconds=settings.entrustments.overdue_sweep_seconds)  # fmt: skip
    await desk.start()
    stack.push_async_callback(desk.close)
    rates = RequestRates(
        "entrustments",
        [Allowance("user", settings.entrustments.max_per_user_hour),
         Allowance("court", settings.entrustments.max_per_court_hour)],
        redis_url=settings.bus.url if cluster.shared else None,
        namespace=settings.bus.namespace,
    )  # fmt: skip
    stack.push_async_callback(rates.close)
    app[ENTRUSTMENTS], app[ENTRUSTMENT_RATES] = desk, rates
    return desk


# ── people ───────────────────────────────────────────────────────────────────────────────────────────────


def _start_login_gate(stack: AsyncExitStack, app: web.Application, auth: AuthSettings) -> VerifyGate:
    """Password hashing (Argon2id), and checks in bounded threads: a login flood waits or is refused, the event
    loop does not."""
    passwords = Passwords(auth)
    app[PASSWORDS] = passwords
    gate = VerifyGate(passwords, workers=auth.verify_workers or verify_threads(), waiting=auth.verify_waiting,
                      per_address=auth.verify_per_address)  # fmt: skip
    stack.callback(gate.close)
    app[LOGIN_GATE] = gate
    return gate


# ── asset queries ────────────────────────────────────────────────────────────────────────────────────────


async def _start_queries(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Settings,
    store: Store,
    bus: EventBus,
    cluster: Coordinator,
    agencies: list[AgencyConfig],
    audit: AuditLog,
    metrics: Metrics,
) -> Broker:
    """Agencies behind one gateway, the broker and follow-ups; what a previous process left pending resumes."""
    gateway = AgencyGateway(agencies)
    await gateway.start()
    stack.push_async_callback(gateway.close)
    broker = Broker(store, bus, gateway, deadline_seconds=settings.queries.deadline_seconds, cluster=cluster,
                    on_feedback=metrics.feedback_seconds.observe)  # fmt: skip
    stack.push_async_callback(broker.close)
    followups = FollowUps(store, bus, gateway, audit, cluster=cluster)
    stack.push_async_callback(followups.close)
    app[GATEWAY], app[BROKER], app[FOLLOWUPS] = gateway, broker, followups
    resumed = await broker.resume_pending()
    reopened = await followups.resume_pending()
    if resumed or reopened:
        log.info("asset queries: resumed %d queries and %d follow-ups", resumed, reopened)
    if cluster.shared:  # take over the queries of a process that died (their leases lapse)
        period = settings.cluster.lease_seconds
        adopter = asyncio.create_task(adopt_forever(broker, followups, period), name="query-takeover")
        stack.push_async_callback(_stop, adopter)
    return broker


async def _start_checkpointer(
    stack: AsyncExitStack,
    app: web.Application,
    settings: AuditSettings,
    data_dir: Path,
    store: Store,
    cluster: Coordinator,
    http: aiohttp.ClientSession,
) -> Checkpointer:
    """Signed checkpoints of the audit chain sent to the witnesses (leader only)."""
    sink = settings.witness_file
    if sink is not None and _same_volume(sink.parent, data_dir):
        log.warning("audit.witness_file %s is on the data dir's volume: whoever can rewrite one can rewrite both",
                    sink)  # fmt: skip
    checkpointer = Checkpointer(store, settings, data_dir, cluster, http)
    app[CHECKPOINTER] = checkpointer
    await checkpointer.start()
    stack.push_async_callback(checkpointer.close)
    return checkpointer


def _same_volume(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


# ── media ────────────────────────────────────────────────────────────────────────────────────────────────


async def _start_media(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Settings,
    tracker: Tracker,
    audit: AuditLog,
    cluster: Coordinator,
) -> MediaHub:
    """Every media peer connection of this process; telemetry on its data channel goes to the tracker."""
    media = MediaHub(settings.media, tracker.ingest, audit, recordings=settings.data_dir / "recordings",
                     cluster=cluster)  # fmt: skip
    stack.push_async_callback(media.close)  # before start: a failed start (recovering a recording) stops what it began
    await media.start()
    app[MEDIA] = media
    per_minute = settings.media.requests_per_minute
    rates: MediaRateGuard  # WHIP/WHEP/talkback POST, PATCH and DELETE per caller, across processes when shared
    if cluster.shared:
        from command_center.shared_throttle import RedisMediaRates

        rates = RedisMediaRates(settings.bus.url, namespace=settings.bus.namespace, per_minute=per_minute)
    else:
        rates = MediaRates(per_minute)
    stack.push_async_callback(rates.close)
    app[MEDIA_RATES] = rates
    return media


async def _start_room_media(
    stack: AsyncExitStack, app: web.Application, media: MediaHub, bus: EventBus, store: Store, audit: AuditLog
) -> None:
    """The consultation rooms' SFU on the media hub; its one task ticks who speaks and publishes room state. And
    the end, on every process, of views of a room's pinned unit that only the room admitted."""
    rooms = RoomMedia(media, bus, store, audit)
    pinned = PinnedViews(bus, media)  # a member's views of the room's unit end on every process
    await pinned.start()
    stack.push_async_callback(pinned.close)
    app[PINNED_VIEWS] = pinned
    task = asyncio.create_task(rooms.run(), name="room-media")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)
    app[ROOM_MEDIA] = rooms


def _record_sos(stack: AsyncExitStack, alarms: AlarmDesk, media: MediaHub) -> None:
    """An SOS from a unit that streams starts its recording at once (evidence of what happened)."""

    def record(alarm: Alarm) -> None:
        if alarm.kind is AlarmKind.SOS and alarm.unit_id is not None:
            media.start_recording(alarm.unit_id, reason=f"SOS alarm {alarm.id}")

    alarms.on_raised.append(record)
    stack.callback(alarms.on_raised.remove, record)


def _start_segment_verifier(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Settings,
    store: Store,
    cluster: Coordinator,
    alarms: AlarmDesk,
) -> SegmentVerifier:
    """Recorded segments re-hashed against the audit chain: by the leader every ``media.verify_interval_seconds``
    (0: only on demand), so tampering or loss shows on the 运维 page, in the metrics and as an alarm for the
    unit's court, or a consultation room's court for a participant's recording (one live alarm per segment)."""

    async def audited() -> list[dict[str, Any]]:
        found, after = [], 0
        while entries := await store.audit_entries(after_seq=after, limit=5000):
            found += [e.details for e in entries if e.action == SEGMENT_ACTION]
            after = entries[-1].seq
        return found

    async def alarm(details: dict[str, Any], check: SegmentCheck) -> None:
        source = str(details["unit_id"])
        about = {"file": check.file, "result": check.result, "problem": check.problem,
                 "session_id": details.get("session_id")}  # fmt: skip
        if source.startswith("room:"):  # a consultation room participant's (media.rooms.participant_key)
            room = await store.get_room(source.removeprefix("room:").rpartition(":")[0])
            await alarms.raise_(AlarmKind.EVIDENCE_MISMATCH, check.file, court_id=room.court_id,
                                details={"room_id": room.id, "room_title": room.title, **about})  # fmt: skip
            return
        unit = await store.get_unit(UnitId(source))
        await alarms.raise_(AlarmKind.EVIDENCE_MISMATCH, check.file, court_id=unit.court_id, unit_id=unit.id,
                            details={"unit_name": unit.name, **about})  # fmt: skip

    verifier = SegmentVerifier(audited, settings.data_dir / "recordings", on_problem=alarm)
    app[VERIFIER] = verifier
    interval = settings.media.verify_interval_seconds
    if interval > 0:
        task = asyncio.create_task(verifier.run_forever(interval, lambda: cluster.holds(LEADER)),
                                   name="segment-verifier")  # fmt: skip
        stack.push_async_callback(_stop, task)
    return verifier


# ── reports, revocation, GB/T 28181 ──────────────────────────────────────────────────────────────────────


def _open_tile_archive(stack: AsyncExitStack, app: web.Application, settings: MapSettings) -> None:
    """A court's street-level tiles (``maps.tile_archive``), when configured: a bad file stops the start."""
    if settings.tile_archive is None:
        return
    archive = TileArchive(settings.tile_archive)
    stack.callback(archive.close)
    app[TILE_ARCHIVE] = archive


def _start_report_pool(stack: AsyncExitStack, app: web.Application, workers: int) -> ReportPool:
    """The worker processes that render map reports."""
    pool = ReportPool(workers)
    stack.push_async_callback(pool.close)
    app[REPORTS] = pool
    return pool


async def _start_revocations(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Settings,
    store: Store,
    bus: EventBus,
    media: MediaHub,
    *,
    shared: bool,
) -> Revocations:
    """WebSocket tickets, and revocation reaching live sockets, WHEP views, talkback and units' sessions."""
    auth = settings.auth
    tickets: TicketBook
    if shared:  # a ticket issued by one process is redeemed by the one the socket reaches
        tickets = RedisTickets(settings.bus.url, namespace=settings.bus.namespace, ttl_seconds=auth.ticket_ttl_seconds)
    else:
        tickets = LocalTickets(auth.ticket_ttl_seconds)
    stack.push_async_callback(tickets.close)
    revocations = Revocations(store, bus, recheck_seconds=auth.recheck_seconds, media=media)
    await revocations.start()
    stack.push_async_callback(revocations.close)
    app[TICKETS], app[REVOCATIONS] = tickets, revocations
    return revocations


async def _start_gb28181(
    stack: AsyncExitStack,
    app: web.Application,
    settings: Gb28181Settings,
    store: Store,
    tracker: Tracker,
    revocations: Revocations,
    alarms: AlarmDesk,
    media: MediaHub,
) -> None:
    """The SIP registrar (UDP and TCP), only when enabled: keepalives, positions and alarms go to the tracker;
    a GB unit's live video (INVITE, PS over RTP) goes to the media hub like a WHIP unit's."""
    if not settings.enabled:
        return

    def watch(unit: Unit, end: Callable[[], None]) -> Callable[[], None]:
        """A registration is a live connection of the unit's credential: revoking the unit, on any process or
        from the CLI (the registry's recheck), ends it like the unit's sockets."""

        async def close(code: int, reason: str) -> None:
            end()

        return revocations.watch(DeviceCaller(unit), close).release

    service = GbService(settings, store, tracker, watcher=watch)
    idle = keepalive_silence(settings) + 30  # a device silent for its missed keepalives is offline
    server = SipServer(service, settings.sip_host, settings.sip_port, idle_seconds=idle)
    live = LiveStreams(settings, service, media, store, host=settings.sip_host)

    def record_sos(alarm: Alarm) -> None:
        """An SOS from a GB unit opens its video and records it, as ``_record_sos`` does for WHIP units."""
        if alarm.kind is AlarmKind.SOS and alarm.unit_id is not None:
            live.open_and_record(alarm.unit_id, f"SOS alarm {alarm.id}",
                                 lambda unit_id, reason: media.start_recording(unit_id, reason=reason))  # fmt: skip

    await service.start()
    stack.push_async_callback(service.close)
    await live.start()
    stack.push_async_callback(live.close)
    alarms.on_raised.append(record_sos)
    stack.callback(alarms.on_raised.remove, record_sos)
    stack.push_async_callback(server.close)
    await server.start()
    app[GB28181], app[GB28181_SIP], app[GB_LIVE] = service, server, live


# ── diagnostics ──────────────────────────────────────────────────────────────────────────────────────────


def _start_idle_sweep(stack: AsyncExitStack, app: web.Application, idle_seconds: float) -> None:
    """Unit sockets run without aiohttp's heartbeat (a timer re-armed on every message); this one sweep
    stands in for it (``command_center/idle_sockets.py``)."""
    idle = IdleSockets(idle_seconds)
    app[IDLE_UNIT_SOCKETS] = idle
    task = asyncio.create_task(idle.sweep_forever(), name="idle-unit-sockets")
    stack.push_async_callback(_stop, task)


def _start_lag_metric(stack: AsyncExitStack, metrics: Metrics, interval: float) -> None:
    """``cc_event_loop_lag_seconds``, always on unless ``observability.loop_lag_interval_seconds`` is 0."""
    if interval <= 0:
        return
    task = asyncio.create_task(watch_lag(interval, metrics.loop_lag_seconds.observe), name="loop-lag-metric")
    stack.push_async_callback(_stop, task)


def _start_loop_lag_probe(stack: AsyncExitStack, path: Path | None) -> None:
    """Benchmarks only (``server.loop_lag_file``): the event loop's lag and the collector's passes, each second."""
    if path is None:
        return
    probe = asyncio.create_task(sample_forever(path), name="loop-lag-probe")
    stack.push_async_callback(_stop, probe)


async def _start_process_heartbeat(
    stack: AsyncExitStack, app: web.Application, settings: Settings, cluster: Coordinator
) -> Processes:
    """This process's record among the cluster's (``cluster.processes``): written now, renewed every
    ``cluster.heartbeat_seconds``, removed on a clean stop; in Redis when shared, else kept here."""
    ttl = settings.cluster.process_ttl_seconds
    processes: Processes
    if cluster.shared:
        processes = RedisProcesses(settings.bus.url, namespace=settings.bus.namespace, ttl_seconds=ttl)
    else:
        processes = LocalProcesses(ttl)
    stack.push_async_callback(processes.close)
    app[PROCESSES] = processes
    state = app[STATE]
    await processes.beat(state.process_record())

    async def beat_forever() -> None:
        while True:
            await asyncio.sleep(settings.cluster.heartbeat_seconds)
            try:
                await processes.beat(state.process_record())
            except Exception as exc:  # Redis away: the record goes stale, as the page then says
                log.warning("cluster: process heartbeat failed (%s)", exc)

    task = asyncio.create_task(beat_forever(), name="process-heartbeat")

    async def leave() -> None:
        await _stop(task)
        with contextlib.suppress(Exception):  # best effort: a record left behind goes stale, then is forgotten
            await processes.leave(cluster.node_id)

    stack.push_async_callback(leave)
    return processes


async def _start_stall_trace(stack: AsyncExitStack, path: Path | None, threshold_ms: float) -> None:
    """Diagnostics (``server.stall_trace_file``): each stall of the loop with the stacks it ran meanwhile."""
    if path is not None:
        await stack.enter_async_context(StallTracer(path, threshold_ms))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed start is reported by whoever awaited it
        await task
