"""The alarm desk: the one way alarms are raised, cleared and handled, and how screens hear of them.

Whoever notices a condition (the tracker: SOS, offline, low battery; the geofence watcher; the task
clock) calls ``raise_``/``clear``; operators act through ``act``. The store keeps the alarm (one live alarm
per condition, with who did what when, across restarts) and every change is published on the court's
``alarms.<court>`` topic as ``{"event": ..., "alarm": view}`` for the screens' alarm lists and sirens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from alarms.models import SELF_RESOLVING, Alarm, AlarmAction, AlarmKind
from alarms.port import AlarmStore
from alarms.views import alarm_view, alarms_topic
from core.ids import CourtId, UnitId, UserId
from event_bus.port import EventBus

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class AlarmDesk:
    def __init__(self, store: AlarmStore, bus: EventBus, *, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._bus = bus
        self._clock_ms = clock_ms
        # Called with each alarm raised, before the screens hear of it (e.g. media starts recording an SOS).
        self.on_raised: list[Callable[[Alarm], None]] = []

    async def raise_(
        self,
        kind: AlarmKind,
        subject: str,
        *,
        court_id: CourtId,
        unit_id: UnitId | None = None,
        details: dict[str, Any] | None = None,
    ) -> Alarm:
        """Raise (or re-activate) the alarm for a condition; screens hear of it only when it changed."""
        alarm, changed = await self._store.raise_alarm(
            kind, subject, court_id=court_id, unit_id=unit_id, details=details or {}, at_ms=self._clock_ms()
        )
        if changed:
            log.info("alarm %d raised: %s %s", alarm.id, kind.value, subject)
            for react in self.on_raised:
                try:
                    react(alarm)
                except Exception:  # a failing reaction must not keep the alarm from the screens
                    log.exception("alarm %d: a reaction failed", alarm.id)
            await self._publish("raised", alarm)
        return alarm

    async def clear(self, kind: AlarmKind, subject: str) -> Alarm | None:
        """The condition cleared: SOS and geofence alarms stay until a person closes them, others resolve."""
        alarm = await self._store.clear_alarm(kind, subject, at_ms=self._clock_ms(), resolve=kind in SELF_RESOLVING)
        if alarm is not None:
            await self._publish("cleared", alarm)
        return alarm

    async def act(self, alarm_id: int, action: AlarmAction, *, user_id: UserId, note: str | None = None) -> Alarm:
        alarm = await self._store.act_on_alarm(alarm_id, action, user_id=user_id, at_ms=self._clock_ms(), note=note)
        log.info("alarm %d: %s by user %d", alarm.id, action.value, user_id)
        await self._publish(action.value, alarm)
        return alarm

    async def _publish(self, event: str, alarm: Alarm) -> None:
        try:
            await self._bus.publish(alarms_topic(alarm.court_id), {"event": event, "alarm": alarm_view(alarm)})
        except Exception:  # stored: screens that missed it get it in their next snapshot
            log.warning("alarm %d: could not publish %s", alarm.id, event, exc_info=True)
