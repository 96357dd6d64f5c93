"""Feeds: one per bus topic a screen can watch, shared by every screen in this process.

A feed subscribes to its bus topic once, keeps the picture the topic describes, serialises each event
once into the message every screen receives, and keeps the recent messages in a ring so a screen that
reconnects gets exactly what it missed (or a snapshot when the ring no longer reaches back that far).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import orjson

from alarms.models import LIVE_STATES
from alarms.views import alarm_view, alarms_topic
from command_center.screens.connection import ScreenConnection
from core.errors import NotFound
from core.ids import CourtId, QueryId, UnitId
from entrustments.desk import tasks_sent
from entrustments.models import LIVE_ENTRUSTMENTS, Entrustment
from entrustments.views import entrustment_view, entrustments_topic
from event_bus.port import Event, EventBus, SubscriberLagged
from field_units.tasks import tasks_topic
from field_units.views import EncodedView, encode_view, encoded_views, units_topic
from operations.models import LIVE_OPERATIONS
from operations.views import operation_view, operations_topic
from persistence.models import UnitState
from persistence.port import Store
from query_control.views import load_query_view, query_topic
from tasks.models import LIVE as LIVE_TASKS
from tasks.views import task_view

log = logging.getLogger(__name__)

RING = 1024  # messages kept per feed for screens that resume
PREFILL = 512  # of which a new feed takes from the bus's history (the bus keeps about 1,000 per topic)


class Feed:
    """Base: bus subscription, ring of serialised messages, fan-out to attached screens."""

    def __init__(self, topic: str, bus: EventBus, *, name: str | None = None) -> None:
        self.topic = topic  # the bus topic followed
        self.name = name or topic  # what screens see as "topic" and use to resume
        self.seq = 0
        self._floor = 0  # the ring holds every message after this seq
        self._bus = bus
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=RING)
        self._screens: set[ScreenConnection] = set()
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        #: Since when no screen uses the feed (monotonic); None while a screen is attached or about to be.
        self.idle_since: float | None = time.monotonic()

    @property
    def screens(self) -> int:
        return len(self._screens)

    def claim(self) -> None:
        """A screen is about to attach: the hub must not remove the feed meanwhile."""
        self.idle_since = None

    def release(self) -> None:
        """Idle from now if no screen is attached (a claim that did not lead to an attach ends here too)."""
        if not self._screens and self.idle_since is None:
            self.idle_since = time.monotonic()

    async def start(self) -> None:
        subscription = await self._stack.enter_async_context(self._bus.subscribe([self.topic], max_queue=10_000))
        await self.reload()
        self._task = asyncio.create_task(self._follow(subscription), name=f"feed:{self.topic}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stack.aclose()

    async def reload(self) -> None:
        """Rebuild the picture from durable state (subclasses load it after this). The ring restarts with the
        topic's recent history from the bus, so a screen that moves from another server process resumes
        here without a gap: the sequence numbers are the bus's, the same in every process."""
        self.seq = await self._bus.last_seq(self.topic)
        self._floor = self.seq
        self._ring.clear()
        start = max(0, self.seq - PREFILL)
        recent = await self._bus.history(self.topic, start)
        if recent is None:
            return  # the bus no longer reaches back that far: screens resuming from there get a snapshot
        self._floor = start
        for event in recent:
            if event.seq > self.seq:
                break
            message = self.apply(event)  # folded into a picture the subclass replaces just after
            if message is not None:
                self._ring.append((event.seq, message))

    async def _follow(self, subscription: Any) -> None:
        while True:
            try:
                event: Event = await subscription.get()
            except SubscriberLagged:
                log.warning("feed %s lagged behind the bus (or the bus restarted); resnapshotting", self.topic)
                await self._resnapshot()
                continue
            if event.seq <= self.seq:
                continue  # already part of the loaded picture
            if event.seq != self.seq + 1 and self.seq:
                log.warning("feed %s: gap %d -> %d", self.topic, self.seq, event.seq)
            self.seq = event.seq
            message = self.apply(event)
            if message is None:
                continue
            if len(self._ring) == self._ring.maxlen:
                self._floor = self._ring[0][0]
            self._ring.append((event.seq, message))
            for screen in self._screens:
                screen.send(message, topic=self.name, seq=event.seq)

    async def _resnapshot(self) -> None:
        """Reload and send every screen a snapshot; if the store cannot answer now, try again shortly
        (the feed must outlive a database hiccup, its screens keep their last picture meanwhile)."""
        delay = 0.5
        while True:
            try:
                await self.reload()
            except Exception:
                log.exception("feed %s: reload failed; retrying in %.1f s", self.topic, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            for screen in list(self._screens):
                self.send_snapshot(screen)
            return

    def attach(self, screen: ScreenConnection, resume: int | None) -> None:
        """Bring the screen up to date (missed messages, or a snapshot), then send it everything new."""
        if resume is not None and self._floor <= resume <= self.seq:
            for seq, message in self._ring:
                if seq > resume:
                    screen.send(message, topic=self.name, seq=seq)
        else:
            self.send_snapshot(screen)
        self._screens.add(screen)
        self.idle_since = None

    def detach(self, screen: ScreenConnection) -> None:
        self._screens.discard(screen)
        self.release()

    def apply(self, event: Event) -> bytes | None:
        """Fold the event into the picture; return the message for screens (None: nothing for them)."""
        raise TypeError(f"{type(self).__name__} must define apply")

    def send_snapshot(self, screen: ScreenConnection) -> None:
        """Send the whole current picture (feeds without one send nothing)."""


class UnitsFeed(Feed):
    """All units of one court: snapshot = every unit's newest view; frames = coalesced changes.

    Each unit's newest view is kept as its JSON bytes, not as the dicts the event carried: bytes are not
    tracked by the garbage collector, while 10,000 units' views as dicts were 20,000 objects replaced every
    second, which lived long enough to be promoted and walked by the collector's middle passes. Frames and
    snapshots are put together from those bytes, the same bytes ``orjson.dumps`` gives for the whole message.
    """

    def __init__(
        self, court_id: CourtId, bus: EventBus, store: Store, *, latency: Callable[[float], None] | None = None
    ) -> None:
        super().__init__(units_topic(court_id), bus)
        self.court_id = court_id
        self._store = store
        #: unit id → its newest UnitView, serialised.
        self.units: dict[str, bytes] = {}
        #: Told, per unit in a frame, the seconds since the unit was heard (its arrival-to-screen time); a
        #: unit gone offline is left out (its last report is a minute old by definition).
        self._latency = latency

    async def reload(self) -> None:
        await super().reload()
        units = await self._store.list_units([self.court_id])
        ids = [u.id for u in units]
        latest = await self._store.latest_positions(ids)
        states = await self._store.unit_states(ids)
        self.units = {
            u.id: encode_view(u, states.get(u.id, UnitState()), latest.get(u.id)).json
            for u in units
            if u.revoked_at is None
        }

    def apply(self, event: Event) -> bytes | None:
        views = encoded_views(event.data["units"])
        if self._latency is not None:
            now_ms = time.time() * 1000
            for view in views:
                if view.status != "offline" and view.last_seen_ms is not None:
                    self._latency(max(0.0, now_ms - view.last_seen_ms) / 1000)
        return self._frame(event, views, event.data["track"])

    def _frame(self, event: Event, views: list[EncodedView], track: list[dict[str, Any]]) -> bytes:
        """Keep each view's bytes as the unit's newest, and the frame made of them (docs/protocols.md)."""
        encoded = []
        for view in views:
            encoded.append(view.json)
            self.units[view.unit_id] = view.json
        head = {"type": "frame", "topic": self.name, "seq": event.seq, "ts_ms": int(event.ts * 1000)}
        return b"".join((orjson.dumps(head)[:-1], b',"units":[', b",".join(encoded), b'],"track":',
                         orjson.dumps(track), b"}"))  # fmt: skip

    def send_snapshot(self, screen: ScreenConnection) -> None:
        head = orjson.dumps({"type": "snapshot", "topic": self.name, "seq": self.seq})
        snapshot = b"".join((head[:-1], b',"units":[', b",".join(self.units.values()), b"]}"))
        screen.send(snapshot, topic=self.name, seq=self.seq)


class UnitFeed(UnitsFeed):
    """One unit: its court's topic filtered to it; seqs are the court topic's (sparse here)."""

    def __init__(self, unit_id: UnitId, court_id: CourtId, bus: EventBus, store: Store) -> None:
        super().__init__(court_id, bus, store)
        self.unit_id = unit_id
        self.name = f"unit:{unit_id}"

    async def reload(self) -> None:
        """Only this unit's rows: a court may hold thousands of units, and every unit topic watched reloads."""
        await Feed.reload(self)
        self.units = {}
        try:
            unit = await self._store.get_unit(self.unit_id)
        except NotFound:
            return
        if unit.revoked_at is None:
            latest = await self._store.latest_positions([unit.id])
            states = await self._store.unit_states([unit.id])
            self.units[unit.id] = encode_view(unit, states.get(unit.id, UnitState()), latest.get(unit.id)).json

    def apply(self, event: Event) -> bytes | None:
        views = [v for v in encoded_views(event.data["units"]) if v.unit_id == self.unit_id]
        track = [t for t in event.data["track"] if t["unit_id"] == self.unit_id]
        if not views and not track:
            return None
        return self._frame(event, views, track)


class AlarmsFeed(Feed):
    """Alarms of one court: snapshot = its live alarms (from the store, so a restart loses none), then
    each change (raised, cleared, acknowledged, resolved, false_alarm) with the alarm's whole view."""

    def __init__(self, court_id: CourtId, bus: EventBus, store: Store) -> None:
        super().__init__(alarms_topic(court_id), bus)
        self.court_id = court_id
        self._store = store
        self.live: dict[int, dict[str, Any]] = {}

    async def reload(self) -> None:
        await super().reload()
        alarms = await self._store.list_alarms(court_ids=[self.court_id], live_only=True)
        self.live = {a.id: alarm_view(a) for a in alarms}

    def apply(self, event: Event) -> bytes:
        view = event.data["alarm"]
        if view["state"] in LIVE_STATES:
            self.live[view["id"]] = view
        else:
            self.live.pop(view["id"], None)
        return orjson.dumps({"type": "alarm", "topic": self.name, "seq": event.seq, "event": event.data["event"],
                             "alarm": view})  # fmt: skip

    def send_snapshot(self, screen: ScreenConnection) -> None:
        alarms = sorted(self.live.values(), key=lambda a: (-a["raised_ms"], -a["id"]))
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "alarms": alarms}
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)


class TasksFeed(Feed):
    """Tasks of one court's units: snapshot = the tasks under way (from the store), then each change."""

    def __init__(self, court_id: CourtId, bus: EventBus, store: Store) -> None:
        super().__init__(tasks_topic(court_id), bus)
        self.court_id = court_id
        self._store = store
        self.live: dict[str, dict[str, Any]] = {}

    async def reload(self) -> None:
        await super().reload()
        tasks = await self._store.list_tasks(court_ids=[self.court_id], statuses=LIVE_TASKS)
        self.live = {t.id: task_view(t) for t in tasks}

    def apply(self, event: Event) -> bytes:
        view = event.data["task"]
        if view["status"] in LIVE_TASKS:
            self.live[view["id"]] = view
        else:
            self.live.pop(view["id"], None)
        return orjson.dumps({"type": "task", "topic": self.name, "seq": event.seq, "task": view})

    def send_snapshot(self, screen: ScreenConnection) -> None:
        tasks = sorted(self.live.values(), key=lambda t: -t["created_ms"])
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "tasks": tasks}
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)


class OperationsFeed(Feed):
    """Enforcement operations of one court, and those of an upper court in which its units take part:
    snapshot = those planned or under way, then each change."""

    def __init__(self, court_id: CourtId, bus: EventBus, store: Store) -> None:
        super().__init__(operations_topic(court_id), bus)
        self.court_id = court_id
        self._store = store
        self.live: dict[str, dict[str, Any]] = {}

    async def reload(self) -> None:
        await super().reload()
        ops = await self._store.list_operations(court_ids=[self.court_id], statuses=LIVE_OPERATIONS)
        ops += await self._store.operations_with_units_of([self.court_id], statuses=LIVE_OPERATIONS)  # 异地调度
        self.live = {o.id: operation_view(o) for o in ops}

    def apply(self, event: Event) -> bytes:
        view = event.data["operation"]
        courts = event.data.get("courts", [view["court_id"]])  # the operation's court and those taking part
        if view["status"] in LIVE_OPERATIONS and self.court_id in courts:
            self.live[view["id"]] = view
        else:
            self.live.pop(view["id"], None)
        return orjson.dumps({"type": "operation", "topic": self.name, "seq": event.seq, "event": event.data["event"],
                             "operation": view, "courts": courts})  # fmt: skip

    def send_snapshot(self, screen: ScreenConnection) -> None:
        ops = sorted(self.live.values(), key=lambda o: -o["created_ms"])
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "operations": ops}
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)


class QueryFeed(Feed):
    """One asset query for its judge: snapshot = the whole query (every agency's status and assets);
    then one ``query_update`` per change as each agency answers, fails or times out."""

    def __init__(self, query_id: QueryId, bus: EventBus, store: Store, agency_names: Mapping[str, str]) -> None:
        super().__init__(query_topic(query_id), bus, name=f"query:{query_id}")
        self.query_id = query_id
        self._store = store
        self._agency_names = agency_names
        self.view: dict[str, Any] = {}
        self._replaying = False

    async def reload(self) -> None:
        self._replaying = True  # a judge's removal in the history must not cut off screens admitted since
        try:
            await super().reload()
        finally:
            self._replaying = False
        self.view = await load_query_view(self._store, self.query_id, self._agency_names)

    def apply(self, event: Event) -> bytes | None:
        data = dict(event.data)
        if data.get("event") == "job":
            jobs = self.view.setdefault("jobs", [])
            index = next((i for i, j in enumerate(jobs) if j["job_id"] == data["job"]["job_id"]), None)
            if index is None:
                jobs.append(data["job"])
            else:
                jobs[index] = data["job"]
        elif data.get("event") == "complete":
            self.view["completed_ms"], self.view["complete"] = data["completed_ms"], True
        message = orjson.dumps({"type": "query_update", "topic": self.name, "seq": event.seq,
                                "ts_ms": int(event.ts * 1000), **data})  # fmt: skip
        if data.get("event") == "access_revoked":
            # Only the query's judge may follow it, and that judge was taken off the case: tell its screens,
            # then send them nothing more of this query (a new subscribe is refused while off the case).
            if not self._replaying:
                for screen in self._screens:
                    screen.send(message, topic=self.name, seq=event.seq)
                self._screens.clear()
            return None
        return message

    def send_snapshot(self, screen: ScreenConnection) -> None:
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "query": self.view}
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)


class EntrustmentsFeed(Feed):
    """Entrustments asked by or of one court (执行委托): snapshot = those live, then each step (asked, accepted,
    refused, units assigned, progress, completed, withdrawn, overdue) with the entrustment's view."""

    def __init__(self, court_id: CourtId, bus: EventBus, store: Store) -> None:
        super().__init__(entrustments_topic(court_id), bus)
        self.court_id = court_id
        self._store = store
        self.live: dict[str, dict[str, Any]] = {}

    async def reload(self) -> None:
        await super().reload()
        found = await self._store.list_entrustments(court_ids=[self.court_id], statuses=LIVE_ENTRUSTMENTS)
        self.live = {e.id: entrustment_view(e) for e in found}

    def apply(self, event: Event) -> bytes:
        view = event.data["entrustment"]
        if view["status"] in LIVE_ENTRUSTMENTS:
            self.live[view["id"]] = view
        else:
            self.live.pop(view["id"], None)
        return orjson.dumps({"type": "entrustment", "topic": self.name, "seq": event.seq,
                             "event": event.data["event"], "text": event.data["text"], "at_ms": event.data["at_ms"],
                             "entrustment": view})  # fmt: skip

    def send_snapshot(self, screen: ScreenConnection) -> None:
        found = sorted(self.live.values(), key=lambda e: -e["created_ms"])
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "entrustments": found}
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)


class EntrustedUnitsFeed(UnitsFeed):
    """The units a court has entrusted work to, for the asking court (``entrusted:<id>``): the receiving court's
    unit topic filtered to the units assigned whose entrusted task is still live, while the entrustment runs.

    A second subscription follows the entrustment (the asking court's topic) and the receiving court's tasks:
    when units change or a unit's task ends, the set is worked out again from the store and screens are told
    (``entrusted``); when the entrustment ends, they are told and sent nothing more of its units (a new
    subscription is refused by the hub)."""

    def __init__(self, entrustment: Entrustment, bus: EventBus, store: Store) -> None:
        super().__init__(entrustment.to_court_id, bus, store)
        self.name = f"entrusted:{entrustment.id}"
        self.entrustment = entrustment
        self.shown: frozenset[str] = frozenset()
        self._control: asyncio.Task[None] | None = None

    async def start(self) -> None:
        e = self.entrustment
        control = await self._stack.enter_async_context(
            self._bus.subscribe([entrustments_topic(e.from_court_id), tasks_topic(e.to_court_id)], max_queue=1000)
        )
        await super().start()
        self._control = asyncio.create_task(self._follow_entrustment(control), name=f"feed-control:{self.name}")

    async def close(self) -> None:
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control
        await super().close()

    async def _shown_units(self) -> frozenset[str]:
        """The assigned units whose entrusted task is live, while the entrustment runs (none otherwise)."""
        e = self.entrustment = await self._store.get_entrustment(self.entrustment.id)
        if not e.running:
            return frozenset()
        sent = tasks_sent(await self._store.entrustment_events(e.id))
        shown = set()
        for unit_id in e.unit_ids:
            if unit_id in sent and (await self._store.get_task(sent[unit_id])).status in LIVE_TASKS:
                shown.add(unit_id)
        return frozenset(shown)

    async def reload(self) -> None:
        """The units shown now, and no history: the receiving court's topic holds the units' positions from
        before they were assigned, which the asking court must never get (a screen resuming from before now
        gets a snapshot, as ``Feed.attach`` does for a seq below the floor)."""
        self.shown = await self._shown_units()
        self.seq = self._floor = await self._bus.last_seq(self.topic)
        self._ring.clear()
        units = [await self._store.get_unit(UnitId(u)) for u in sorted(self.shown)]
        latest = await self._store.latest_positions([u.id for u in units])
        states = await self._store.unit_states([u.id for u in units])
        self.units = {u.id: encode_view(u, states.get(u.id, UnitState()), latest.get(u.id)).json for u in units}

    def apply(self, event: Event) -> bytes | None:
        views = [v for v in encoded_views(event.data["units"]) if v.unit_id in self.shown]
        track = [t for t in event.data["track"] if t["unit_id"] in self.shown]
        if not views and not track:
            return None
        return self._frame(event, views, track)

    async def _follow_entrustment(self, control: Any) -> None:
        while True:
            try:
                event: Event = await control.get()
            except SubscriberLagged:
                event = Event("", 0, 0.0, {})  # something was missed: work the set out again
            data = event.data
            if data.get("entrustment", {}).get("id", self.entrustment.id) != self.entrustment.id:
                continue  # another entrustment of the asking court
            task = data.get("task")
            if task is not None and task["unit_id"] not in self.entrustment.unit_ids:
                continue  # a task of a unit not on this entrustment
            try:
                shown = await self._shown_units()
            except Exception:
                log.exception("feed %s: cannot work out the units shown; none are shown until it can", self.name)
                shown = frozenset()
            self._show(shown)

    def _show(self, shown: frozenset[str]) -> None:
        e = self.entrustment
        changed, self.shown = shown != self.shown, shown
        for unit_id in [u for u in self.units if u not in shown]:
            del self.units[unit_id]
        if changed or not e.running:
            message = orjson.dumps({"type": "entrusted", "topic": self.name, "entrustment_id": e.id,
                                    "status": e.status.value, "unit_ids": sorted(shown)})  # fmt: skip
            for screen in list(self._screens):
                screen.send(message, topic=self.name, seq=self.seq)
        if not e.running:  # ended: the asking court sees nothing more of these units
            self._screens.clear()
            self._ring.clear()
            self._floor = self.seq
            self.release()


class RoomFeed(Feed):
    """One consultation room's members and their media (``media.rooms``): snapshot = the newest state
    (from the bus, or from the store with no media when the room has published none yet), then each change
    ``{type: "room", room_id, recording, members: [{user_id, name, present, muted, publishing, speaking}]}``."""

    def __init__(self, room_id: str, bus: EventBus, store: Store) -> None:
        super().__init__(f"room:{room_id}", bus)
        self.room_id = room_id
        self._store = store
        self.members: list[dict[str, Any]] | None = None
        self.recording = False  # only the room's SFU records, and it says so in its events

    async def reload(self) -> None:
        self.members = None
        self.recording = False
        await super().reload()
        if self.members is None:
            members = await self._store.room_members(self.room_id)
            self.members = [{"user_id": m.user_id, "name": (await self._store.get_user(m.user_id)).display_name,
                             "present": m.present, "muted": m.muted, "publishing": [], "speaking": False}
                            for m in members]  # fmt: skip

    def apply(self, event: Event) -> bytes:
        self.members = list(event.data["members"])
        self.recording = bool(event.data.get("recording", False))
        return orjson.dumps({"type": "room", "topic": self.name, "seq": event.seq, "room_id": self.room_id,
                             "recording": self.recording, "members": self.members})  # fmt: skip

    def send_snapshot(self, screen: ScreenConnection) -> None:
        snapshot = {"type": "snapshot", "topic": self.name, "seq": self.seq, "room_id": self.room_id,
                    "recording": self.recording, "members": self.members or []}  # fmt: skip
        screen.send(orjson.dumps(snapshot), topic=self.name, seq=self.seq)
