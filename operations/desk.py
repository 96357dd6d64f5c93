"""Enforcement operations (执行行动): planned in the centre, started (every assigned unit is sent to the target),
concluded or cancelled; a timeline keeps what happened, with the asset queries and recordings linked to it.
Every change goes out on ``operations.<court>`` so the wall display shows the operation as it runs."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from core.errors import Conflict
from core.ids import CaseId, CourtId, UnitId, UserId
from event_bus.port import EventBus
from operations.models import LIVE_OPERATIONS, MOVES, Operation, OperationEvent, OperationKind, OperationStatus
from operations.port import OperationCourtStore, OperationStore
from operations.views import operation_view, operations_topic
from tasks.models import LIVE, Task, TaskKind, TaskStatus

log = logging.getLogger(__name__)


#: Tries of a compare-and-set on assigned units before a 409 (each lost try means another change won).
ASSIGN_ATTEMPTS = 20


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

    async def cancel(self, task: Task, *, note: str | None) -> Task:
        """Cancel a live task and tell its unit (which stops showing it)."""


class TaskList(Protocol):
    async def list_tasks(
        self,
        *,
        unit_id: UnitId | None = None,
        court_ids: Sequence[CourtId] | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 500,
    ) -> list[Task]: ...


class Auditor(Protocol):
    """The hash-chained audit log (``query_control.audit.AuditLog``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> object: ...


class DutyLog(Protocol):
    """Where a step is told to a court's centre (``persistence.duty_port.DutyStore``)."""

    async def add_duty_note(self, court_id: CourtId, user_id: UserId | None, text: str, at_ms: int) -> object: ...


class CourtOfUnit(Protocol):
    @property
    def court_id(self) -> CourtId: ...


class UnitLookup(Protocol):
    async def get_unit(self, unit_id: UnitId) -> CourtOfUnit: ...


class OperationDeskStore(OperationStore, OperationCourtStore, DutyLog, UnitLookup, TaskList, Protocol):
    """What the desk needs of storage: the operations, the courts taking part, the duty log, the units' courts,
    the units' tasks."""


class OperationDesk:
    """Runs operations; an operation of an upper court may take units of any court below it (异地调度): each
    of those courts is told in its duty log and sees the operation on its wall while its units take part."""

    def __init__(
        self,
        store: OperationDeskStore,
        bus: EventBus,
        tasks: UnitTasks,
        audit: Auditor,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ):
        self._store = store
        self._bus = bus
        self._tasks = tasks
        self._audit = audit
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
        await self._share(op, created_by)
        await self._event(op, "created", f"{title}（{onsite_commander} 现场指挥）", created_by)
        return op

    async def assign(self, op: Operation, unit_ids: Sequence[UnitId], user_id: UserId) -> Operation:
        """Set the units; under way, each newly assigned unit is sent to the target (those already sent are not
        sent again) and each unit taken off has its go-to task of this operation cancelled (the unit is told and
        stops showing it; audited). A compare-and-set on the units replaced: changes at once must not both find
        a unit new, or both call one off."""
        units = list(dict.fromkeys(unit_ids))
        current = op
        for _ in range(ASSIGN_ATTEMPTS):
            if current.status not in LIVE_OPERATIONS:
                raise Conflict(f"operation is {current.status.value}: its units can no longer change")
            updated = await self._store.set_operation_units(
                op.id, units, allowed=LIVE_OPERATIONS, replacing=current.unit_ids
            )
            if updated is not None:
                break
            current = await self._store.get_operation(op.id)  # another change (or a step) won: decide again
        else:
            raise Conflict("the operation's units are being changed by others at this moment; try again")
        op = updated
        before = await self._store.operation_courts(op.id)
        await self._share(op, user_id)
        await self._event(op, "units", "、".join(op.unit_ids) or "—", user_id, {"unit_ids": list(op.unit_ids)},
                          also=before)  # fmt: skip
        if op.status is OperationStatus.UNDER_WAY:
            await self._dispatch(op, user_id, [u for u in op.unit_ids if u not in current.unit_ids])
        await self._recall(op, user_id, [u for u in current.unit_ids if u not in op.unit_ids])
        return op

    async def _recall(self, op: Operation, user_id: UserId, unit_ids: Sequence[UnitId]) -> None:
        """Cancel the live tasks this operation sent to units now taken off it, and audit each."""
        for unit_id in unit_ids:
            for task in await self._store.list_tasks(unit_id=unit_id, statuses=LIVE):
                if task.details.get("operation_id") != op.id:
                    continue
                with contextlib.suppress(Conflict):  # the unit ended it meanwhile
                    await self._tasks.cancel(task, note=f"已调离执行行动「{op.title}」")
                    details = {"operation_id": op.id, "unit_id": unit_id, "task_id": task.id}
                    await self._audit.record("operation.unit_recalled", user_id, reason=op.title, details=details)

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

    async def _share(self, op: Operation, user_id: UserId) -> None:
        """Record which other courts' units take part (so those courts see the operation) and tell each court
        newly taking part in its duty log."""
        courts = [(await self._store.get_unit(unit_id)).court_id for unit_id in op.unit_ids]
        others = [court for court in dict.fromkeys(courts) if court != op.court_id]
        for court in await self._store.set_operation_courts(op.id, others):
            units = "、".join(u for u, c in zip(op.unit_ids, courts, strict=True) if c == court)
            text = f"异地调度：{op.court_id} 指挥中心调度本院单元 {units} 参加执行行动「{op.title}」"
            await self._store.add_duty_note(court, user_id, text, self._clock_ms())

    async def _dispatch(self, op: Operation, user_id: UserId, unit_ids: Sequence[UnitId] | None = None) -> None:
        """Send the units (default: every assigned one) to the target (a go_to task; a unit offline gets it
        when it is back)."""
        details: dict[str, Any] = {key: op.target[key] for key in TARGET_FIELDS if key in op.target}
        details["note"] = f"执行行动：{op.title}"
        details["operation_id"] = op.id  # so the task is found and called off when the unit is taken off
        for unit_id in op.unit_ids if unit_ids is None else unit_ids:
            await self._tasks.create_for(
                unit_id, TaskKind.GO_TO, f"{op.title} · 前往现场", created_by=user_id, details=details
            )

    async def _event(
        self,
        op: Operation,
        kind: str,
        text: str,
        user_id: UserId | None,
        ref: dict[str, Any] | None = None,
        *,
        also: Sequence[CourtId] = (),
    ) -> OperationEvent:
        """Store the step and show it on the walls of the operation's court and of every court whose units
        take part (``courts``); ``also``: courts that took part until now, so their walls drop it. A court
        taken off is told only which operation to drop: what it has become (its units, target, the courts
        still taking part) is no longer that court's to read, as ``GET /api/operations/{id}`` answers 403."""
        event = await self._store.add_operation_event(
            op.id, kind=kind, text=text, at_ms=self._clock_ms(), user_id=user_id, ref=ref or {}
        )
        courts = [op.court_id, *await self._store.operation_courts(op.id)]
        message = {"operation": operation_view(op), "event": kind, "courts": courts}
        dropped = {"operation": {"id": op.id, "court_id": op.court_id, "status": op.status.value}, "event": kind,
                   "courts": [op.court_id]}  # fmt: skip
        for court in dict.fromkeys([*courts, *also]):
            try:
                await self._bus.publish(operations_topic(court), message if court in courts else dropped)
            except Exception:  # stored: the wall gets it in its next snapshot
                log.warning("operation %s: could not publish to court %s", op.id, court, exc_info=True)
        return event
