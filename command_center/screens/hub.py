"""The screen hub: authenticates nothing itself (the route did), resolves what a screen may watch,
attaches it to shared feeds, and runs its socket until it goes away.

Client messages (docs/protocols.md): ``subscribe`` with topics ``units``, ``alarms`` and ``unit:<id>``
and an optional ``resume`` map, and ``ping``. A bad message gets an ``error`` and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from command_center.auth import Access, Caller, UserCaller
from command_center.keys import REVOCATIONS
from command_center.metrics import Metrics
from command_center.screens.connection import ScreenConnection
from command_center.screens.feeds import (
    AlarmsFeed,
    Feed,
    OperationsFeed,
    QueryFeed,
    RoomFeed,
    TasksFeed,
    UnitFeed,
    UnitsFeed,
)
from config.settings import TrackingSettings
from core import log_context
from core.errors import AppError, BadRequest, Forbidden, NotFound, ServiceUnavailable
from core.ids import CourtId, QueryId, UnitId
from courts.visibility import visible_courts
from event_bus.port import EventBus
from persistence.availability import store_unavailable
from persistence.port import Store
from query_control.audit import AuditLog
from query_control.case_access import require_on_case

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
MAX_CLIENT_MESSAGE = 64 * 1024
MAX_TOPICS = 64


class ScreenHub:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        settings: TrackingSettings,
        *,
        agency_names: Mapping[str, str],
        audit: AuditLog,
        metrics: Metrics | None = None,
    ) -> None:
        """``agency_names`` label the answers in query snapshots; watching a query's results is a read of them,
        so it is recorded in ``audit``; ``metrics`` counts screens and frames (``/metrics``)."""
        self._store = store
        self._unit_latency = None if metrics is None else metrics.unit_to_screen_seconds.observe
        #: Screens disconnected for falling behind, and the messages thrown away with them (ended screens;
        #: the metrics add the live ones' when scraped).
        self.too_slow_screens = 0
        self._dropped_ended = 0
        self._bus = bus
        self._settings = settings
        self._feeds: dict[str, asyncio.Task[Feed]] = {}
        self._screens: set[ScreenConnection] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._agency_names = agency_names
        self._audit = audit

    @property
    def screens(self) -> int:
        return len(self._screens)

    def dropped_messages(self) -> int:
        """Messages thrown away from screens that fell behind, since start."""
        return self._dropped_ended + sum(screen.dropped for screen in self._screens)

    @property
    def feeds(self) -> int:
        """Feeds held (started, starting or failed): each one a bus subscription, a task and a ring."""
        return len(self._feeds)

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="screen-heartbeat")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="screen-feed-sweeper")

    async def close(self) -> None:
        for owned in (self._heartbeat, self._sweeper):
            if owned is not None:
                owned.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await owned
        for task in self._feeds.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                await task.result().close()
            else:
                task.cancel()
        self._feeds.clear()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            beat = orjson.dumps({"type": "heartbeat", "server_time_ms": int(time.time() * 1000)})
            for screen in list(self._screens):
                screen.send(beat)

    async def _sweep_forever(self) -> None:
        grace = self._settings.screen_feed_grace_seconds
        while True:
            await asyncio.sleep(min(max(grace / 2, 0.05), HEARTBEAT_SECONDS))
            try:
                await self.sweep()
            except Exception:  # a feed that fails to close must not stop the sweeping of the others
                log.exception("screens: removing idle feeds failed")

    async def sweep(self) -> int:
        """Remove the feeds no screen has used for the grace period (and those that failed to start): without
        this every topic ever watched (each asset query's, each unit's) would keep its subscription, task and
        ring for the life of the process. Returns how many were removed."""
        deadline = time.monotonic() - self._settings.screen_feed_grace_seconds
        idle: list[Feed] = []
        for key, task in list(self._feeds.items()):
            if not task.done():
                continue
            if task.cancelled() or task.exception() is not None:
                del self._feeds[key]
                continue
            feed = task.result()
            if feed.idle_since is not None and feed.idle_since <= deadline:
                del self._feeds[key]
                idle.append(feed)
        for feed in idle:
            await feed.close()
        if idle:
            log.debug("screens: removed %d idle feeds; %d remain", len(idle), len(self._feeds))
        return len(idle)

    async def _feed(self, key: str, make: Any) -> Feed:
        """The shared feed for ``key``, started once even when several screens ask at the same moment;
        claimed for the caller, which attaches a screen or releases it."""
        task = self._feeds.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):

            async def start() -> Feed:
                feed: Feed = make()
                feed.claim()
                await feed.start()
                return feed

            task = self._feeds[key] = asyncio.create_task(start(), name=f"start-feed:{key}")
        elif task.done():
            task.result().claim()
        feed = await asyncio.shield(task)
        feed.claim()
        return feed

    # one screen ---------------------------------------------------------------------------------------
    async def serve(self, request: web.Request, caller: Caller) -> web.WebSocketResponse:
        with log_context.bound(connection_id=secrets.token_hex(4)):  # every line about this screen carries it
            return await self._serve(request, caller)

    async def _serve(self, request: web.Request, caller: Caller) -> web.WebSocketResponse:
        # timeout: how long a close handshake may take; a dropped screen may not answer it at all.
        ws = web.WebSocketResponse(heartbeat=20.0, compress=False, max_msg_size=MAX_CLIENT_MESSAGE, timeout=2.0)
        await ws.prepare(request)
        transport = request.transport
        screen = ScreenConnection(
            ws,
            max_queue=self._settings.screen_queue_frames,
            label=f"{caller.access}@{request.remote}",
            abort=transport.abort if transport is not None else lambda: None,
        )
        attached: dict[str, Feed] = {}
        writer = asyncio.create_task(screen.write_forever(), name=f"screen-writer:{screen.label}")
        self._screens.add(screen)
        watch = request.app[REVOCATIONS].watch_socket(caller, ws)  # logout, revocation, expiry close it (4401)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type == WSMsgType.BINARY:
                        screen.send_json(_error(BadRequest("send JSON text messages")))
                    continue
                try:
                    await self._handle(screen, caller, message.data, attached)
                except AppError as exc:
                    screen.send_json(_error(exc))
                except Exception as exc:  # the screen's connection outlives anything one message does
                    if store_unavailable(exc):
                        screen.send_json(_error(ServiceUnavailable("the database is unavailable; try again")))
                    else:
                        log.exception("screen %s: a message failed", screen.label)
                        screen.send_json(_error(AppError("internal error; it has been logged")))
                if writer.done():
                    break
        finally:
            await watch.settle()
            self._screens.discard(screen)
            for feed in attached.values():
                feed.detach(screen)
            if not writer.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await screen.drained()
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                await writer
            await ws.close()
            screen.finished = True
            self._dropped_ended += screen.dropped
            self.too_slow_screens += screen.too_slow
        return ws

    async def _handle(self, screen: ScreenConnection, caller: Caller, text: str, attached: dict[str, Feed]) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise BadRequest("a message must be a JSON object with a 'type'")
        kind = message.get("type")
        if kind == "ping":
            screen.send_json({"type": "pong", "server_time_ms": int(time.time() * 1000)})
            return
        if kind != "subscribe":
            raise BadRequest(f"unknown message type {kind!r}; expected 'subscribe' or 'ping'")
        topics = message.get("topics")
        resume = message.get("resume", {})
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise BadRequest("'topics' must be a non-empty list of strings")
        if len(topics) > MAX_TOPICS:
            raise BadRequest(f"at most {MAX_TOPICS} topics per subscribe")
        if not isinstance(resume, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in resume.items()
        ):
            raise BadRequest("'resume' must map topic names to integer sequence numbers")
        feeds = await self._resolve(caller, topics)
        try:
            for feed in feeds:
                if feed.name in attached:
                    continue
                feed.attach(screen, resume.get(feed.name))
                attached[feed.name] = feed
        finally:
            for feed in feeds:
                feed.release()
        screen.send_json({"type": "subscribed", "topics": sorted(f.name for f in feeds)})

    async def _resolve(self, caller: Caller, topics: list[str]) -> list[Feed]:
        courts = await visible_courts(self._store, caller)
        if courts is None:
            courts = [c.id for c in await self._store.list_courts()]
        feeds: list[Feed] = []
        try:
            return await self._resolve_into(feeds, courts, caller, topics)
        except BaseException:
            for feed in feeds:  # claimed for a subscription that is refused
                feed.release()
            raise

    async def _resolve_into(
        self, feeds: list[Feed], courts: list[CourtId], caller: Caller, topics: list[str]
    ) -> list[Feed]:
        for topic in topics:
            if topic == "units":
                for court in courts:
                    feeds.append(
                        await self._feed(
                            f"units.{court}",
                            lambda c=court: UnitsFeed(c, self._bus, self._store, latency=self._unit_latency),
                        )
                    )
            elif topic == "operations":
                for court in courts:
                    feeds.append(
                        await self._feed(
                            f"operations.{court}", lambda c=court: OperationsFeed(c, self._bus, self._store)
                        )
                    )
            elif topic == "tasks":
                for court in courts:
                    feeds.append(
                        await self._feed(f"tasks.{court}", lambda c=court: TasksFeed(c, self._bus, self._store))
                    )
            elif topic == "alarms":
                for court in courts:
                    feeds.append(
                        await self._feed(f"alarms.{court}", lambda c=court: AlarmsFeed(c, self._bus, self._store))
                    )
            elif topic.startswith("unit:"):
                unit_id = UnitId(topic.removeprefix("unit:"))
                try:
                    unit = await self._store.get_unit(unit_id)
                except NotFound:
                    raise NotFound(f"unit {unit_id} does not exist") from None
                if unit.court_id not in courts:
                    raise Forbidden(f"unit {unit_id} is outside your jurisdiction")
                court_id: CourtId = unit.court_id
                feeds.append(
                    await self._feed(topic, lambda u=unit_id, c=court_id: UnitFeed(u, c, self._bus, self._store))
                )
            elif topic.startswith("query:"):
                query_id = QueryId(topic.removeprefix("query:"))
                query = await self._store.get_query(query_id)  # NotFound for an unknown query
                if not isinstance(caller, UserCaller) or caller.user.id != query.judge_id:
                    raise Forbidden(f"query {query_id} belongs to another judge")
                require_on_case(await self._store.get_case(query.case_id), caller.user.id)  # still on the case
                await self._audit.record(
                    "query.watch", caller.user.id, case_id=query.case_id, query_id=query.id, details={"topic": topic}
                )
                feeds.append(
                    await self._feed(topic, lambda q=query_id: QueryFeed(q, self._bus, self._store, self._agency_names))
                )
            elif topic.startswith("room:"):
                room = await self._store.get_room(topic.removeprefix("room:"))  # NotFound for an unknown room
                members = {m.user_id for m in await self._store.room_members(room.id)}
                if not isinstance(caller, UserCaller) or (
                    caller.user.id not in members and caller.access is not Access.ADMIN
                ):
                    raise Forbidden(f"you are not invited to room {room.id}")
                feeds.append(await self._feed(topic, lambda r=room.id: RoomFeed(r, self._bus, self._store)))
            else:
                raise BadRequest(
                    f"unknown topic {topic!r}; expected 'units', 'alarms', 'tasks', 'operations', 'unit:<id>',"
                    " 'query:<id>' or 'room:<id>'"
                )
        return feeds


def _error(exc: AppError) -> dict[str, Any]:
    return {"type": "error", "code": exc.code, "message": exc.message}
