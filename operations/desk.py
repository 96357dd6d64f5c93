"""Enforcement operations (执行行动): planned in the centre, started (every assigned unit is sent to the target),
concluded or cancelled; a timeline keeps what happened, with the asset queries and recordings linked to it.
Every change goes out on ``operations.<court>`` so the wall display shows the operation as it runs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from core.errors import Conflict
from core.ids import CaseId, CourtId, UnitId, UserId
from event_bus.port import EventBus
from operations.models import MOVES, Operation, OperationEvent, OperationKind, OperationStatus
from operations.port import OperationStore
from operations.views import operation_view, operations_topic
from tasks.models import TaskKind

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


TARGET_FIELDS: tuple[str, ...] = ("lat", "lon", "address")


class UnitTasks(Protocol):
    """How the desk sends a unit a task (``field_units.tasks.TaskDesk``): a port, so operations depends on
    neither field_units nor the store's unit records, and the storage adapters may import operations' models
    without an import cycle."""

    async def create_for(
        self, unit_id: UnitId, kind: TaskKind, title: str, *, created_by: UserId, details: dict[str, Any]
    ) -> object: ...


class OperationDesk:
    def __init__(
        self, store: OperationStore, bus: EventBus, tasks: UnitTasks, *, clock_ms: Callable[[], int] = _now_ms
    ):
        self._store = store
        self._bus = bus
        self._tasks = tasks
        self._clock_ms = clock_ms

    async def create(
        self,
        *,
        court_id: CourtId,
        kind: OperationKind,
        title: str,
        case_id: CaseId | None,
        commander_id: UserId,
        onsite_commander: str,
        target: dict[str, Any],
        unit_ids: Sequence[UnitId],
        created_by: UserId,
    ) -> Operation:
        now = self._clock_ms()
        units = tuple(dict.fromkeys(unit_ids))
        op = Operation(uuid.uuid4().hex, court_id, kind, title, case_id, commander_id, onsite_commander, target,
                       units, OperationStatus.PLANNED, created_by, now, None, None)  # fmt: skip
        op = await self._store.add_operation(op)
        await self._event(op, "created", f"{title}（{onsite_commander} 现场指挥）", created_by)
        return op

    async def assign(self, op: Operation, unit_ids: Sequence[UnitId], user_id: UserId) -> Operation:
        if op.status not in (OperationStatus.PLANNED, OperationStatus.UNDER_WAY):
            raise Conflict(f"operation is {op.status.value}: its units can no longer change")
        op = await self._store.set_operation_units(op.id, list(dict.fromkeys(unit_ids)))
        await self._event(op, "units", "、".join(op.unit_ids) or "—", user_id, {"unit_ids": list(op.unit_ids)})
        if op.status is OperationStatus.UNDER_WAY:
            await self._dispatch(op, user_id)
        return op

    async def move(self, op: Operation, status: OperationStatus, user_id: UserId, note: str | None) -> Operation:
        moved = await self._store.move_operation(op.id, status, allowed=MOVES[status], at_ms=self._clock_ms())
        if moved is None:
            current = await self._store.get_operation(op.id)
            raise Conflict(f"operation is {current.status.value}; it cannot become {status.value}")
        await self._event(moved, status.value, note or "", user_id)
        if status is OperationStatus.UNDER_WAY:
            await self._dispatch(moved, user_id)
        return moved

    async def note(self, op: Operation, user_id: UserId, text: str, ref: dict[str, Any], kind: str) -> OperationEvent:
        return await self._event(op, kind, text, user_id, ref)

    async def _dispatch(self, op: Operation, user_id: UserId) -> None:
        """Send every assigned unit to the target (a go_to task; a unit offline gets it when it is back)."""
        details: dict[str, Any] = {key: op.target[key] for key in TARGET_FIELDS if key in op.target}
        details["note"] = f"执行行动：{op.title}"
        for unit_id in op.unit_ids:
            await self._tasks.create_for(
                unit_id, TaskKind.GO_TO, f"{op.title} · 前往现场", created_by=user_id, details=details
            )

    async def _event(
        self, op: Operation, kind: str, text: str, user_id: UserId | None, ref: dict[str, Any] | None = None
    ) -> OperationEvent:
        event = await self._store.add_operation_event(
            op.id, kind=kind, text=text, at_ms=self._clock_ms(), user_id=user_id, ref=ref or {}
        )
        try:
            await self._bus.publish(operations_topic(op.court_id), {"operation": operation_view(op), "event": kind})
        except Exception:  # stored: the wall gets it in its next snapshot
            log.warning("operation %s: could not publish", op.id, exc_info=True)
        return event
