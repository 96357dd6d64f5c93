"""The desk that runs entrustments between courts (执行委托): each step is stored on the entrustment's
timeline, written in both courts' duty logs and appended to the audit chain, so either court's next shift
and any later review read the same account.

Who may take a step (which side) is decided at the edge from the court hierarchy; the desk enforces the
order of steps (``models.MOVES``) with compare-and-set, so two operators deciding at once cannot both win.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from core.errors import Conflict, ValidationFailed
from core.ids import CourtId, UnitId, UserId
from entrustments.models import ENDED, MOVES, Entrustment, EntrustmentEvent, EntrustmentStatus, Side
from entrustments.port import EntrustmentStore
from operations.desk import ASSIGN_ATTEMPTS, DutyLog
from tasks.models import LIVE, Task, TaskKind


def _now_ms() -> int:
    return int(time.time() * 1000)


class TaskLookup(Protocol):
    async def get_task(self, task_id: str) -> Task: ...


class EntrustmentDeskStore(EntrustmentStore, DutyLog, TaskLookup, Protocol):
    pass


class EntrustedTasks(Protocol):
    """How the desk sends a unit to the address and calls it back (``field_units.tasks.TaskDesk``)."""

    async def create_for(
        self, unit_id: UnitId, kind: TaskKind, title: str, *, created_by: UserId, details: dict[str, Any]
    ) -> Task: ...

    async def cancel(self, task: Task, *, note: str | None) -> Task: ...


class Auditor(Protocol):
    """The hash-chained audit log (``query_control.audit.AuditLog``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> object: ...


STEP_WORDS = {
    "requested": "委托请求", "accepted": "已受理", "refused": "已退回", "units": "派出单元", "report": "进展",
    "completed": "已办结", "withdrawn": "已撤回",
}  # fmt: skip


class EntrustmentDesk:
    def __init__(
        self,
        store: EntrustmentDeskStore,
        tasks: EntrustedTasks,
        audit: Auditor,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._audit = audit
        self._clock_ms = clock_ms

    async def request(
        self,
        *,
        from_court_id: CourtId,
        to_court_id: CourtId,
        task: str,
        address: str,
        lat: float | None,
        lon: float | None,
        deadline_ms: int,
        reason: str,
        user_id: UserId,
    ) -> Entrustment:
        now = self._clock_ms()
        if from_court_id == to_court_id:
            raise ValidationFailed(f"to_court_id: court {to_court_id} cannot entrust a task to itself")
        if deadline_ms <= now:
            raise ValidationFailed("deadline: it has passed already")
        draft = Entrustment(uuid.uuid4().hex, from_court_id, to_court_id, task, address, lat, lon, deadline_ms,
                            reason, EntrustmentStatus.REQUESTED, (), user_id, now, None, None)  # fmt: skip
        entrustment = await self._store.add_entrustment(draft)
        await self._step(entrustment, "requested", Side.ASKING, reason, user_id)
        return entrustment

    async def move(
        self, entrustment: Entrustment, status: EntrustmentStatus, user_id: UserId, note: str
    ) -> Entrustment:
        """Accept, refuse, complete or withdraw (the edge has checked the caller is on the side that may)."""
        moved = await self._store.move_entrustment(
            entrustment.id, status, allowed=MOVES[status], at_ms=self._clock_ms()
        )
        if moved is None:
            current = await self._store.get_entrustment(entrustment.id)
            raise Conflict(f"entrustment is {current.status.value}; it cannot become {status.value}")
        side = Side.ASKING if status is EntrustmentStatus.WITHDRAWN else Side.RECEIVING
        await self._step(moved, status.value, side, note, user_id)
        if status in ENDED:
            await self._recall(moved, moved.unit_ids)
        return moved

    async def assign(self, entrustment: Entrustment, unit_ids: Sequence[UnitId], user_id: UserId) -> Entrustment:
        """Set the receiving court's units on the task; each newly assigned unit is sent to the address."""
        units = list(dict.fromkeys(unit_ids))
        before = entrustment
        for _ in range(ASSIGN_ATTEMPTS):  # compare-and-set: two at once must not both find a unit new
            updated = await self._store.set_entrustment_units(
                entrustment.id, units, allowed=(EntrustmentStatus.ACCEPTED,), replacing=before.unit_ids
            )
            if updated is not None:
                break
            before = await self._store.get_entrustment(entrustment.id)  # another assignment won: decide again
            if before.status is not EntrustmentStatus.ACCEPTED:
                raise Conflict(f"entrustment is {before.status.value}: units are assigned once it is accepted")
        else:
            raise Conflict("the entrustment's units are being changed by others at this moment; try again")
        added = [u for u in units if u not in before.unit_ids]
        await self._recall(updated, [u for u in before.unit_ids if u not in units])
        details: dict[str, Any] = {"address": updated.address, "note": f"执行委托：{updated.task}"}
        if updated.lat is not None and updated.lon is not None:
            details |= {"lat": updated.lat, "lon": updated.lon}
        sent = {}
        for unit_id in added:
            task = await self._tasks.create_for(unit_id, TaskKind.GO_TO, f"执行委托 · {updated.task}",
                                                created_by=user_id, details=details)  # fmt: skip
            sent[unit_id] = task.id
        ref = {"unit_ids": units, "task_ids": sent}
        await self._step(updated, "units", Side.RECEIVING, "、".join(units) or "—", user_id, ref)
        return updated

    async def _recall(self, e: Entrustment, unit_ids: Sequence[UnitId]) -> None:
        """Cancel the go-to tasks still live of units taken off the entrustment, or of all when it ends."""
        sent = tasks_sent(await self._store.entrustment_events(e.id))
        for unit_id in unit_ids:
            if unit_id not in sent:
                continue
            task = await self._store.get_task(sent[unit_id])
            if task.status in LIVE:
                with contextlib.suppress(Conflict):  # the unit ended it meanwhile
                    await self._tasks.cancel(task, note=f"执行委托「{e.task}」{STEP_WORDS.get(e.status.value, '')}")

    async def report(self, entrustment: Entrustment, user_id: UserId, text: str) -> EntrustmentEvent:
        """A progress report from the receiving centre, for the asking court to follow."""
        if entrustment.status is not EntrustmentStatus.ACCEPTED:
            raise Conflict(f"entrustment is {entrustment.status.value}: progress is reported while it is accepted")
        return await self._step(entrustment, "report", Side.RECEIVING, text, user_id)

    async def _step(
        self,
        e: Entrustment,
        kind: str,
        side: Side,
        text: str,
        user_id: UserId,
        ref: dict[str, Any] | None = None,
    ) -> EntrustmentEvent:
        at = self._clock_ms()
        event = await self._store.add_entrustment_event(
            e.id, kind=kind, court_id=e.court_of(side), text=text, at_ms=at, user_id=user_id, ref=ref or {}
        )
        line = f"执行委托「{e.task}」（{e.from_court_id} → {e.to_court_id}）{STEP_WORDS.get(kind, kind)}"
        line += f"：{text}" if text else ""
        for court_id in (e.from_court_id, e.to_court_id):
            await self._store.add_duty_note(court_id, user_id, line, at)
        details = {"entrustment_id": e.id, "from_court_id": e.from_court_id, "to_court_id": e.to_court_id,
                   "status": e.status.value} | (ref or {})  # fmt: skip
        await self._audit.record(f"entrustment.{kind}", user_id, reason=text, details=details)
        return event


def tasks_sent(events: Sequence[EntrustmentEvent]) -> dict[str, str]:
    """The go-to task last sent to each unit for the entrustment (unit id → task id), from its timeline."""
    sent: dict[str, str] = {}
    for event in events:
        if event.kind == "units":
            sent |= event.ref.get("task_ids", {})
    return sent
