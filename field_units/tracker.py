"""The live tracker: telemetry in, unit status and coalesced updates out to the bus.

It validates each batch (``telemetry``), moves the unit's status (``status``), hands positions to the
durable writer and answers the unit once they are committed. Screens do not get one event per position:
every tick (about 10 a second) the tracker publishes, per court, one event holding the newest view of each
unit that changed and the late positions of backlogs (to fill in trails). Alarms (SOS, offline, low
battery) go to the alarm desk at once. A sweeper marks silent units offline; with several processes
only the leader sweeps, and each process's view of every unit is kept current by ``replication``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import orjson

from alarms.desk import AlarmDesk
from alarms.models import AlarmKind
from cluster.port import LEADER, Coordinator
from config.settings import TrackingSettings
from core.errors import NotFound, ServiceUnavailable
from core.ids import CourtId, UnitId
from core.startup import ready_or_failed
from event_bus.port import EventBus, SubscriberLagged
from field_units import status
from field_units.geofence_watch import GeofenceWatch
from field_units.replication import STATES_TOPIC, apply_delta, heard_at, state_delta
from field_units.telemetry import Rejection, parse_batch
from field_units.views import encode_view, unit_view, units_topic
from field_units.writer import CommitWaiter, Key, PositionWriter
from maps.geofences import FenceEvent
from persistence.models import Duty, Position, Status, Unit, UnitState
from persistence.port import TelemetryStore, UnitStore

log = logging.getLogger(__name__)

MAX_BATCH = 5_000  # positions in one upload (docs/protocols.md)
BATTERY_HYSTERESIS = 5.0  # percentage points above the low-battery threshold before its alarm clears
NEVER_HEARD = UnitState()  # the state of a unit the tracker has not heard from (shared: states are frozen)


class TrackerStore(UnitStore, TelemetryStore, Protocol):
    """What the tracker needs of storage: the units, their positions and their last state."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class PositionCounts:
    """What became of the positions units sent this process, since it started."""

    stored: int = 0
    duplicate: int = 0
    invalid: int = 0  # refused by validation (the rest of the batch is kept)
    overloaded: int = 0  # refused because the database is behind (503: the unit keeps and resends them)


class Ack(msgspec.Struct, frozen=True):
    """The answer to one batch, sent only after the stored positions are committed.

    One is built and sent per telemetry message: a Struct because a frozen dataclass sets each field through
    ``object.__setattr__`` (construction, ``as_dict`` and ``orjson`` took 1.2 µs, ``encode`` of a Struct 0.3)."""

    stored: list[int]
    duplicates: list[int]
    rejected: list[Rejection]

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "ack",
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [r.as_dict() for r in self.rejected],
        }

    def encode(self) -> bytes:
        """``as_dict`` as JSON; the ack of nearly every message (one position, stored) without building it."""
        if len(self.stored) == 1 and not self.duplicates and not self.rejected:
            return b'{"type":"ack","stored":[%d],"duplicates":[],"rejected":[]}' % self.stored[0]
        return orjson.dumps(self.as_dict())


@dataclass
class _Pending:
    """What changed in one court since the last tick."""

    units: set[UnitId] = field(default_factory=set)
    live: dict[UnitId, Position] = field(default_factory=dict)  # the position each unit shows this tick
    track: dict[UnitId, list[Position]] = field(default_factory=dict)


class Taken(msgspec.Struct, gc=False):
    """A telemetry message validated and shown live, not yet stored (``Tracker.take``).

    ``state``, ``battery_low`` and ``crossings`` are what is left for ``Tracker.settle``: almost always
    nothing (``settled``). A Struct untracked by the collector (one is made for every message and lives until
    its commit; it is never part of a cycle)."""

    unit: Unit
    good: list[Position]
    bad: list[Rejection]
    started: float  # perf_counter when it arrived, for the ack-time histogram
    live: Position | None = None  # the position the unit now shows, if one of these moved it
    state: UnitState | None = None  # a status change to apply (stored, alarms)
    battery_low: bool | None = None  # the low-battery alarm to raise (True) or clear (False)
    crossings: list[FenceEvent] | None = None

    @property
    def settled(self) -> bool:
        return self.state is None and self.battery_low is None and not self.crossings


class Tracker:
    def __init__(
        self,
        store: TrackerStore,
        bus: EventBus,
        writer: PositionWriter,
        settings: TrackingSettings,
        alarms: AlarmDesk,
        *,
        geofences: GeofenceWatch | None = None,
        cluster: Coordinator | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        on_ack: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._writer = writer
        self._settings = settings
        self._skew_ms = int(settings.max_clock_skew_seconds * 1000)
        self._alarms = alarms
        self._geofences = geofences
        self._cluster = cluster
        self._replicate = cluster is not None and cluster.shared
        self._outgoing: dict[UnitId, dict[str, Any]] = {}  # status changes to send the other processes this tick
        self._heard: dict[UnitId, int] = {}  # and when this process last heard each unit it heard this tick
        self._clock_ms = clock_ms
        self._low_battery: set[UnitId] = set()  # units whose low-battery alarm this process raised
        self._units: dict[UnitId, Unit] = {}
        self._states: dict[UnitId, UnitState] = {}
        self._latest: dict[UnitId, Position] = {}
        self._pending: dict[CourtId, _Pending] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.published_events = 0
        #: Positions by what became of them (stored, duplicate, invalid, overloaded), for the metrics: plain
        #: integers on the hot path, read when scraped.
        self.position_counts = PositionCounts()
        self._on_ack = on_ack  # seconds from a batch's arrival to its answer (the metrics' histogram)

    # lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the directory, statuses and latest positions, then start the publisher and the sweeper."""
        self._units = {u.id: u for u in await self._store.list_units()}
        self._states = await self._store.unit_states()
        self._latest = await self._store.latest_positions()
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="tracker-publisher"),
            asyncio.create_task(self._sweep_forever(), name="tracker-offline-sweeper"),
        ]
        if self._replicate:
            ready = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.create_task(self._follow_peers(ready), name="tracker-replication"))
            try:
                await ready_or_failed(ready, self._tasks[-1], "tracker: following the other processes' units")
            except BaseException:
                replication = self._tasks.pop()  # its failure is the one reported
                replication.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await replication
                await self.close()
                raise

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._publish_pending()

    # reading ------------------------------------------------------------------------------------------
    def status_counts(self) -> dict[Status, int]:
        """Unrevoked units this process knows (registered before it started, or heard since) by displayed status;
        read when metrics are scraped, not per message."""
        counts = dict.fromkeys(Status, 0)
        for unit_id, unit in self._units.items():
            if unit.revoked_at is None:
                counts[self.state(unit_id).status] += 1
        return counts

    def state(self, unit_id: UnitId) -> UnitState:
        return self._states.get(unit_id, NEVER_HEARD)

    def latest(self, unit_id: UnitId) -> Position | None:
        """The unit's newest position this process knows of."""
        return self._latest.get(unit_id)

    def view(self, unit_id: UnitId) -> dict[str, Any]:
        unit = self._units.get(unit_id)
        if unit is None:
            raise NotFound(f"unit {unit_id} does not exist")
        return unit_view(unit, self.state(unit_id), self._latest.get(unit_id))

    async def live_view(self, unit_id: UnitId) -> dict[str, Any]:
        """``view``, for a unit registered after this process started too."""
        await self._unit(unit_id)
        await self.positions([unit_id])
        return self.view(unit_id)

    # telemetry ----------------------------------------------------------------------------------------
    async def ingest(self, unit: Unit, raw: object) -> Ack:
        """Validate, show live, store durably, answer. Raises ValueError for an unusable batch."""
        taken = self.take(unit, raw)
        if not taken.settled:
            await self.settle(taken)
        committed: asyncio.Future[AbstractSet[Key]] = asyncio.get_running_loop().create_future()
        self.store(taken, committed)
        return self.acknowledge(taken, await committed)

    def take(self, unit: Unit, raw: object) -> Taken:
        """Validate and show live, without waiting for anything: what ``ingest`` does before the write.

        Split out so a unit's socket can take nearly every message in one synchronous call and be answered
        from the commit (``command_center.unit_socket``), instead of resuming a chain of coroutines twice a
        message. What needs the store or the alarm desk (a status change, a battery or geofence alarm) is
        left in the result for ``settle``. Raises ValueError for an unusable batch."""
        started = time.perf_counter()
        now = self._clock_ms()
        good, bad = parse_batch(raw, unit_id=unit.id, now_ms=now, limit=MAX_BATCH, max_future_ms=self._skew_ms)
        unit_id = unit.id
        self._units[unit_id] = unit
        taken = Taken(unit, good, bad, started)
        self.position_counts.invalid += len(bad)
        if not good:
            return taken
        single = len(good) == 1  # nearly every message: no max, no any over a generator
        newest = good[0] if single else max(good, key=live_key)
        current = self._latest.get(unit_id)
        if current is None or live_key(newest) > live_key(current):
            taken.live = newest
            self._latest[unit_id] = newest
            pending = self._court(unit)
            pending.units.add(unit_id)
            superseded = pending.live.get(unit_id)
            if superseded is not None:  # coalesced away before a frame showed it: keep it in the trail
                pending.track.setdefault(unit_id, []).append(superseded)
            pending.live[unit_id] = newest
        sos = newest.sos if single else any(p.sos for p in good)
        old = self._states.get(unit_id, NEVER_HEARD)
        heard = status.heard(old, at_ms=now, sos=sos)
        if old.online and heard.sos == old.sos and not self._replicate:
            self._states[unit_id] = heard  # only last_seen_ms moved: what ``_apply`` would do, without comparing
        else:
            taken.state = heard
        live = taken.live
        if live is not None and live.battery_pct is not None:
            taken.battery_low = self._battery_change(unit_id, live.battery_pct)
        if live is not None and self._geofences is not None:
            taken.crossings = self._geofences.crossings(unit, live)  # the newest position only: a backlog is history
        return taken

    async def settle(self, taken: Taken) -> None:
        """What ``take`` left for the store and the alarm desk, in the order ``take`` found it."""
        unit = taken.unit
        if taken.state is not None:
            await self._apply(unit, taken.state)
        if taken.battery_low is not None:
            assert taken.live is not None and taken.live.battery_pct is not None
            await self._battery_alarm(unit, taken.live.battery_pct, raised=taken.battery_low)
        if taken.crossings:
            assert self._geofences is not None
            await self._geofences.act(unit, taken.crossings)

    def store(self, taken: Taken, waiter: CommitWaiter) -> None:
        """Hand the positions to the writer, which tells ``waiter`` once they are committed (then
        ``acknowledge``). Raises ``ServiceUnavailable`` at once when the writer cannot take them (nothing was
        stored)."""
        try:
            self._writer.enqueue(taken.good, waiter)
        except ServiceUnavailable:
            self.position_counts.overloaded += len(taken.good)
            raise

    def acknowledge(self, taken: Taken, inserted: AbstractSet[Key]) -> Ack:
        """The answer once the positions are committed (``inserted``: the new keys of their batch)."""
        unit_id = taken.unit.id
        live = taken.live
        stored: list[int] = []
        duplicates: list[int] = []
        late: list[Position] = []
        for p in taken.good:
            if (unit_id, p.seq) in inserted:
                stored.append(p.seq)
                if p is not live:
                    late.append(p)
            else:
                duplicates.append(p.seq)
        if late:
            self._court(taken.unit).track.setdefault(unit_id, []).extend(late)
        counts = self.position_counts
        counts.stored += len(stored)
        counts.duplicate += len(duplicates)
        if self._on_ack is not None:
            self._on_ack(time.perf_counter() - taken.started)
        return Ack(stored, duplicates, taken.bad)

    async def heard_from(self, unit: Unit, *, sos: bool = False) -> None:
        """A unit spoke without a position (a GB/T 28181 keepalive or alarm): online, SOS raised if asked,
        through the same status machine and alarms as telemetry."""
        self._units[unit.id] = unit
        new = status.heard(self.state(unit.id), at_ms=self._clock_ms(), sos=sos)
        if new.status != self.state(unit.id).status:
            await self.positions([unit.id])  # the view screens get shows where the unit is (not on every keepalive)
        await self._apply(unit, new)

    async def gone(self, unit: Unit) -> None:
        """The unit left for certain (its GB registration expired or it unregistered): offline now, with the
        offline alarm, instead of waiting for the silence limit."""
        self._units[unit.id] = unit
        await self._apply(unit, status.silence(self.state(unit.id), now_ms=self._clock_ms(), offline_after_ms=0))

    # commands from the command centre ---------------------------------------------------------------
    async def set_duty(self, unit_id: UnitId, duty: Duty) -> UnitState:
        unit = await self._unit(unit_id)
        await self.positions([unit_id])  # the view screens get shows where the unit is, wherever it reports
        await self._apply(unit, status.set_duty(self.state(unit_id), duty))
        return self.state(unit_id)

    async def clear_sos(self, unit_id: UnitId) -> UnitState:
        unit = await self._unit(unit_id)
        await self.positions([unit_id])
        await self._apply(unit, status.clear_sos(self.state(unit_id)))
        return self.state(unit_id)

    async def _unit(self, unit_id: UnitId) -> Unit:
        unit = self._units.get(unit_id)
        if unit is None:
            unit = await self._store.get_unit(unit_id)  # registered after start
            self._units[unit_id] = unit
        return unit

    # state changes ------------------------------------------------------------------------------------
    def _court(self, unit: Unit) -> _Pending:
        pending = self._pending.get(unit.court_id)
        if pending is None:
            pending = self._pending[unit.court_id] = _Pending()
        return pending

    async def _apply(self, unit: Unit, new: UnitState) -> None:
        old = self.state(unit.id)
        if new == old:
            return
        self._states[unit.id] = new
        if self._replicate:
            if delta := state_delta(old, new):
                self._outgoing.setdefault(unit.id, {}).update(delta)
            if new.last_seen_ms is not None and new.last_seen_ms != old.last_seen_ms:
                self._heard[unit.id] = new.last_seen_ms
        if new.status == old.status:
            return
        self._court(unit).units.add(unit.id)
        log.info("unit %s: %s -> %s", unit.id, old.status.value, new.status.value)
        try:  # screens see the new status from memory; the store and the alarm desk may be down
            await self._store.save_unit_state(unit.id, new)
            for kind, raised in _alarm_changes(old, new):
                if raised:
                    details = {"unit_name": unit.name}
                    await self._alarms.raise_(kind, unit.id, court_id=unit.court_id, unit_id=unit.id, details=details)
                else:
                    await self._alarms.clear(kind, unit.id)
        except Exception:
            # The positions still go to the writer, which holds them for the database; the status shows live.
            log.exception("unit %s: status %s could not be stored or alarmed", unit.id, new.status.value)

    def _battery_change(self, unit_id: UnitId, percent: float) -> bool | None:
        """Whether the low-battery alarm is raised (True) or cleared (False) by this reading, None if neither.

        Cleared only once charged a few points above the threshold, so a reading that wobbles around it
        does not raise and clear it over and over."""
        low = self._settings.low_battery_percent
        if percent < low and unit_id not in self._low_battery:
            self._low_battery.add(unit_id)
            return True
        if percent >= low + BATTERY_HYSTERESIS and unit_id in self._low_battery:
            self._low_battery.discard(unit_id)
            return False
        return None

    async def _battery_alarm(self, unit: Unit, percent: float, *, raised: bool) -> None:
        if raised:
            details = {"unit_name": unit.name, "battery_pct": percent}
            await self._alarms.raise_(
                AlarmKind.LOW_BATTERY, unit.id, court_id=unit.court_id, unit_id=unit.id, details=details
            )
        else:
            await self._alarms.clear(AlarmKind.LOW_BATTERY, unit.id)

    # background loops ---------------------------------------------------------------------------------
    async def _publish_forever(self) -> None:
        interval = 1.0 / self._settings.frames_per_second
        while True:
            started = time.monotonic()
            try:
                await self._publish_pending()
            except Exception:  # the loop must survive a bus hiccup; the next tick retries
                log.exception("tracker: publishing failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _publish_pending(self) -> None:
        pending, self._pending = self._pending, {}
        known, states, latest = self._units, self._states, self._latest
        for court_id, changes in pending.items():
            # Each changed unit's ``view``, serialised for the bus (a unit in ``_pending`` is in ``_units``: ``take``
            # put it there); one comprehension, not a method call a unit: 10,000 of them a second.
            units = [encode_view(known[u], states.get(u, NEVER_HEARD), latest.get(u)) for u in sorted(changes.units)]
            track = [
                {"unit_id": unit_id, "points": [[p.fix_time_ms, p.lat, p.lon] for p in sorted(points, key=_fix)]}
                for unit_id, points in changes.track.items()
            ]
            await self._bus.publish(units_topic(court_id), {"units": units, "track": track})
            self.published_events += 1
        if self._outgoing or self._heard:
            outgoing, heard, self._outgoing, self._heard = self._outgoing, self._heard, {}, {}
            assert self._cluster is not None
            await self._bus.publish(STATES_TOPIC, {"node": self._cluster.node_id, "units": outgoing, "heard": heard})

    async def _follow_peers(self, ready: asyncio.Future[None]) -> None:
        """Apply every process's unit changes (this one's too, in the bus's order: see ``replication``)."""
        async with self._bus.subscribe([STATES_TOPIC], max_queue=10_000) as subscription:
            ready.set_result(None)
            while True:
                try:
                    event = await subscription.get()
                except SubscriberLagged:
                    log.warning("tracker: fell behind the other processes' unit changes; later ones catch up")
                    continue
                for unit_id, last_seen_ms in event.data["heard"].items():
                    if await self._known(UnitId(unit_id)):
                        self._states[UnitId(unit_id)] = heard_at(self.state(UnitId(unit_id)), last_seen_ms)
                for unit_id, delta in event.data["units"].items():
                    if await self._known(UnitId(unit_id)):
                        self._states[UnitId(unit_id)] = apply_delta(self.state(UnitId(unit_id)), delta)

    async def _known(self, unit_id: UnitId) -> bool:
        """Whether the unit is in this process's directory (loaded now if it was registered elsewhere)."""
        if unit_id in self._units:
            return True
        try:
            self._units[unit_id] = await self._store.get_unit(unit_id)
        except Exception:
            log.warning("tracker: unit %s changed elsewhere but cannot be loaded", unit_id, exc_info=True)
            return False
        return True

    async def positions(self, unit_ids: list[UnitId]) -> dict[UnitId, Position]:
        """The newest position of each unit, whichever process heard it (its own, or the store's, which every
        process's writer keeps current); what this process knows is used if the store cannot answer."""
        try:
            stored = await self._store.latest_positions(unit_ids)
        except Exception:
            log.warning("tracker: latest positions unavailable from the store; using this process's", exc_info=True)
            stored = {}
        for unit_id, position in stored.items():
            current = self._latest.get(unit_id)
            if current is None or live_key(position) > live_key(current):
                self._latest[unit_id] = position
        return {unit_id: self._latest[unit_id] for unit_id in unit_ids if unit_id in self._latest}

    async def _sweep_forever(self) -> None:
        default_ms = int(self._settings.offline_after_seconds * 1000)
        period = min(1.0, self._settings.offline_after_seconds / 4)
        while True:
            await asyncio.sleep(period)
            if self._cluster is not None and not self._cluster.holds(LEADER):
                continue  # another process is the leader and sweeps for everyone
            now = self._clock_ms()
            # Units heard within the shortest silence limit of any are skipped without looking further: at
            # 10,000 units nearly all of them, every second (a per-unit check cost about 1 % of the server).
            overrides = [u.offline_after_seconds for u in self._units.values() if u.offline_after_seconds is not None]
            recent = now - min([default_ms, *(int(s * 1000) for s in overrides)])
            silent = [(u, s) for u, s in self._states.items() if s.online and (s.last_seen_ms or 0) <= recent]
            for unit_id, state in silent:
                unit = self._units.get(unit_id)
                if unit is None:
                    continue
                limit = default_ms if unit.offline_after_seconds is None else int(unit.offline_after_seconds * 1000)
                quiet = status.silence(state, now_ms=now, offline_after_ms=limit)
                if quiet != state:
                    try:
                        await self.positions([unit_id])
                        await self._apply(unit, quiet)
                    except Exception:
                        log.exception("tracker: marking %s offline failed", unit_id)


def _fix(p: Position) -> tuple[int, int]:
    return (p.fix_time_ms, p.seq)


def live_key(p: Position) -> tuple[int, int]:
    """Which of two positions the live view shows: the newer, where a fix stamped ahead of the server's
    clock counts as received when it arrived. A backlog (older fixes) never moves the marker back, and a
    fix from a fast device clock cannot hold the marker until real time catches up with its stamp: the
    next fix received after it moves it on. The store's ``unit_latest`` follows the same rule."""
    return (min(p.fix_time_ms, p.received_ms), p.seq)


def _alarm_changes(old: UnitState, new: UnitState) -> list[tuple[AlarmKind, bool]]:
    """Alarms raised or cleared by a state change: SOS, and a unit going offline or coming back."""
    changes = []
    if old.sos != new.sos:
        changes.append((AlarmKind.SOS, new.sos))
    if old.online != new.online and old.last_seen_ms is not None:
        changes.append((AlarmKind.OFFLINE, not new.online))
    return changes


__all__ = ["Ack", "Duty", "Status", "Taken", "Tracker"]
