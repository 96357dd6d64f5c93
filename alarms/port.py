"""The storage alarms need: the alarm desk's narrow port (``persistence.port.Store`` includes it).

State moves are compare-and-set in the database, so two operators acting on one alarm at once cannot both
win, and a restart finds every live alarm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from alarms.models import Alarm, AlarmAction, AlarmKind
from core.ids import CourtId, UnitId, UserId


class AlarmStore(Protocol):
    async def raise_alarm(
        self,
        kind: AlarmKind,
        subject: str,
        *,
        court_id: CourtId,
        unit_id: UnitId | None,
        details: dict[str, Any],
        at_ms: int,
    ) -> tuple[Alarm, bool]:
        """The live alarm for (kind, subject) — created, or the live one marked active again — and whether
        anything changed (False: it was live and active already)."""

    async def clear_alarm(self, kind: AlarmKind, subject: str, *, at_ms: int, resolve: bool) -> Alarm | None:
        """The condition cleared: mark the live alarm inactive (and resolve it by the system when
        ``resolve``); None when no alarm for it is live or it was already inactive."""

    async def act_on_alarm(
        self, alarm_id: int, action: AlarmAction, *, user_id: UserId, at_ms: int, note: str | None
    ) -> Alarm:
        """A person's step; NotFound, or Conflict when the alarm is not in a state the action allows."""

    async def get_alarm(self, alarm_id: int) -> Alarm: ...

    async def list_alarms(
        self, *, court_ids: Sequence[CourtId] | None, live_only: bool, limit: int = 500
    ) -> list[Alarm]:
        """Newest first; ``court_ids`` None means every court."""
