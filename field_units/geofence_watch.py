"""Geofences on the live position path: each unit's newest position is checked against the fences that
apply to it (its own court's and those of the courts above it), through one spatial index for all fences
(rebuilt when fences change, never per position), with crossings debounced so GPS drift along an edge
does not flap. A crossing a fence alarms on raises a ``geofence`` alarm through the alarm desk; the
opposite crossing marks that alarm's condition cleared (a person still closes it).

Fences change in one process; ``changed`` rebuilds this process's index and tells the others over the bus
(topic ``geofences``), whose ``follow_changes`` rebuilds theirs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from shapely.geometry import shape

from alarms.desk import AlarmDesk
from alarms.models import AlarmKind
from core.ids import CourtId
from event_bus.port import EventBus
from maps.geofences import Crossing, Debouncer, FenceEvent, FenceKind, Geofence, GeofenceIndex
from persistence.geofence_models import AlarmOn, StoredGeofence
from persistence.geofence_port import GeofenceStore
from persistence.models import Position, Unit
from persistence.port import CourtStore

log = logging.getLogger(__name__)

GEOFENCES_TOPIC = "geofences"


class FenceWatchStore(GeofenceStore, CourtStore, Protocol):
    """What the watch needs of storage: the fences and the courts they belong to."""


def to_fence(stored: StoredGeofence) -> Geofence:
    kind = FenceKind(stored.kind)
    if stored.geometry["type"] == "Point":
        lon, lat = stored.geometry["coordinates"][:2]
        return Geofence(stored.id, stored.name, kind, centre=(lat, lon), radius_m=stored.radius_m)
    return Geofence(stored.id, stored.name, kind, polygon=shape(stored.geometry))


def alarms_on(rule: AlarmOn, crossing: Crossing) -> bool:
    return rule is AlarmOn.BOTH or rule.value == crossing.value


class GeofenceWatch:
    def __init__(self, store: FenceWatchStore, alarms: AlarmDesk, *, fixes: int, seconds: float) -> None:
        self._store = store
        self._alarms = alarms
        self._debouncer = Debouncer(fixes=fixes, seconds=seconds)
        self._index = GeofenceIndex([])
        self._fences: dict[str, StoredGeofence] = {}
        self._scopes: dict[CourtId, frozenset[CourtId]] = {}  # a court and every court above it
        self.events = 0  # crossings seen, for health and tests

    async def reload(self) -> None:
        """Rebuild the index from the store (after fences are added or removed)."""
        stored = await self._store.list_geofences()
        parents = {c.id: c.parent_id for c in await self._store.list_courts()}
        self._scopes = {court: frozenset(_chain(court, parents.get)) for court in parents}
        self._fences = {f.id: f for f in stored}
        self._index = GeofenceIndex([to_fence(f) for f in stored])
        log.info("geofences: %d in the index", len(stored))

    async def changed(self, bus: EventBus, node_id: str) -> None:
        """Fences were added or removed here: rebuild now, and have every other process rebuild too."""
        await self.reload()
        await bus.publish(GEOFENCES_TOPIC, {"node": node_id})

    async def follow_changes(self, bus: EventBus, node_id: str, ready: asyncio.Future[None]) -> None:
        """Rebuild whenever another process changed the fences (runs for the life of the process)."""
        async with bus.subscribe([GEOFENCES_TOPIC]) as subscription:
            ready.set_result(None)
            while True:
                try:
                    event = await subscription.get()
                    if event.data.get("node") != node_id:
                        await self.reload()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a lag or a store hiccup: rebuild once the store answers
                    log.exception("geofences: could not follow a change; rebuilding")
                    await self._reload_until_done()

    async def _reload_until_done(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.reload()
                return
            except Exception as exc:
                log.warning("geofences: rebuilding failed (%s); the old index stays, retrying in %.0f s", exc, delay)
                delay = min(delay * 2, 30.0)

    async def observe(self, unit: Unit, position: Position) -> list[FenceEvent]:
        """Check the unit's newest position; act on the crossings it completes."""
        events = self.crossings(unit, position)
        await self.act(unit, events)
        return events

    def crossings(self, unit: Unit, position: Position) -> list[FenceEvent]:
        """The crossings the unit's newest position completes (debounced), not yet acted on: see ``act``."""
        if not self._fences:
            return []
        scope = self._scopes.get(unit.court_id, frozenset({unit.court_id}))
        inside = {f for f in self._index.containing(position.lat, position.lon) if self._fences[f].court_id in scope}
        return self._debouncer.update(unit.id, position.fix_time_ms, inside)

    async def act(self, unit: Unit, events: list[FenceEvent]) -> None:
        """Raise or clear the alarms of crossings ``crossings`` found."""
        for event in events:
            self.events += 1
            await self._act(unit, event)

    async def _act(self, unit: Unit, event: FenceEvent) -> None:
        fence = self._fences.get(event.fence_id)
        if fence is None:
            return  # removed meanwhile
        subject = f"{unit.id}|{fence.id}"
        if alarms_on(fence.alarm_on, event.crossing):
            details = {"unit_name": unit.name, "fence": fence.name, "fence_id": fence.id, "fence_kind": fence.kind,
                       "crossing": event.crossing.value}  # fmt: skip
            await self._alarms.raise_(AlarmKind.GEOFENCE, subject, court_id=unit.court_id, unit_id=unit.id,
                                      details=details)  # fmt: skip
        elif fence.alarm_on is not AlarmOn.NONE:
            await self._alarms.clear(AlarmKind.GEOFENCE, subject)  # back on the allowed side


def _chain(court: CourtId, parent_of: Callable[[CourtId], CourtId | None]) -> list[CourtId]:
    chain: list[CourtId] = []
    current: CourtId | None = court
    while current is not None and current not in chain:
        chain.append(current)
        current = parent_of(current)
    return chain
