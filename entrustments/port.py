"""The storage entrustments need; part of the ``Store`` port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from core.fencing import Fence
from core.ids import CourtId, UnitId, UserId
from entrustments.models import Entrustment, EntrustmentEvent, EntrustmentStatus


class EntrustmentStore(Protocol):
    async def add_entrustment(self, entrustment: Entrustment) -> Entrustment: ...

    async def get_entrustment(self, entrustment_id: str) -> Entrustment:
        """NotFound when there is none."""

    async def list_entrustments(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[EntrustmentStatus] | None
    ) -> list[Entrustment]:
        """Those asked by or of these courts (None: all), newest first."""

    async def move_entrustment(
        self, entrustment_id: str, status: EntrustmentStatus, *, allowed: Sequence[EntrustmentStatus], at_ms: int
    ) -> Entrustment | None:
        """Compare-and-set the status (stamping decided_ms on a decision, ended_ms at the end); None if the
        current status is not in ``allowed``; NotFound if there is no such entrustment."""

    async def set_entrustment_units(
        self,
        entrustment_id: str,
        unit_ids: Sequence[UnitId],
        *,
        allowed: Sequence[EntrustmentStatus],
        replacing: Sequence[UnitId] | None = None,
    ) -> Entrustment | None:
        """Set the assigned units while the status is in ``allowed`` and, given ``replacing``, the units are
        still those (compare-and-set: what is new is decided against what was replaced); None otherwise."""

    async def add_entrustment_event(
        self,
        entrustment_id: str,
        *,
        kind: str,
        court_id: CourtId,
        text: str,
        at_ms: int,
        user_id: UserId | None,
        ref: dict[str, Any],
    ) -> EntrustmentEvent: ...

    async def entrustment_events(self, entrustment_id: str) -> list[EntrustmentEvent]:
        """Oldest first."""

    async def overdue_entrustments(self, now_ms: int) -> list[Entrustment]:
        """Those still requested or accepted past their deadline and not yet marked overdue."""

    async def mark_entrustment_overdue(
        self, entrustment_id: str, *, at_ms: int, fence: Fence | None
    ) -> Entrustment | None:
        """Compare-and-set ``overdue_ms`` while it is unset and the entrustment live and past its deadline, under
        the sweeper's lease (``FencedOut`` for a stale grant); None when another sweep marked it or it ended."""
