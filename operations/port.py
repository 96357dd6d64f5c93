"""The storage enforcement operations need; part of the ``Store`` port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from core.ids import CourtId, UnitId, UserId
from operations.models import Operation, OperationEvent, OperationStatus


class OperationStore(Protocol):
    async def add_operation(self, operation: Operation) -> Operation: ...

    async def get_operation(self, operation_id: str) -> Operation: ...

    async def list_operations(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        """Newest first."""

    async def move_operation(
        self, operation_id: str, status: OperationStatus, *, allowed: Sequence[OperationStatus], at_ms: int
    ) -> Operation | None:
        """Compare-and-set the status (stamping started_ms or ended_ms); None if not in ``allowed``."""

    async def set_operation_units(
        self,
        operation_id: str,
        unit_ids: Sequence[UnitId],
        *,
        allowed: Sequence[OperationStatus] | None = None,
        replacing: Sequence[UnitId] | None = None,
    ) -> Operation | None:
        """Set the units; given ``allowed`` / ``replacing``, only while the status is one of those and the
        units are still those (compare-and-set), else None. NotFound for an unknown operation."""

    async def add_operation_event(
        self, operation_id: str, *, kind: str, text: str, at_ms: int, user_id: UserId | None, ref: dict[str, Any]
    ) -> OperationEvent: ...

    async def operation_events(self, operation_id: str) -> list[OperationEvent]:
        """Oldest first."""


class OperationCourtStore(Protocol):
    """Which other courts' units take part in an operation (异地调度), so each of those courts sees it."""

    async def set_operation_courts(self, operation_id: str, court_ids: Sequence[CourtId]) -> list[CourtId]:
        """Record the courts whose units take part (replacing the previous set); the courts newly added."""

    async def operation_courts(self, operation_id: str) -> list[CourtId]: ...

    async def operations_with_units_of(
        self, court_ids: Sequence[CourtId], *, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        """Operations in which units of these courts take part, newest first."""
