"""The desk that runs entrustments between courts (执行委托): each step is stored on the entrustment's
timeline, written in both courts' duty logs and appended to the audit chain, so either court's next shift
and any later review read the same account.

Who may take a step (which side) is decided at the edge from the court hierarchy; the desk enforces the
order of steps (``models.MOVES``) with compare-and-set, so two operators deciding at once cannot both win.

Each step also goes out on both courts' ``entrustments.<court>`` topics (``{"event", "entrustment", "text",
"at_ms"}``), so the asking and the receiving centres' screens follow it as it happens. One process (the
leader) sweeps for entrustments still live past their deadline: each is marked overdue once (a fenced
compare-and-set), raises an ``entrustment_overdue`` alarm (执行委托超期) for each of its two courts and is
audited; the alarms resolve themselves when the entrustment ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from alarms.models import AlarmKind
from cluster.port import LEADER, Coordinator, fence_of
from core.errors import Conflict, FencedOut, ValidationFailed
from core.ids import CourtId, UnitId, UserId
from entrustments.models import ENDED, MOVES, Entrustment, EntrustmentEvent, EntrustmentStatus, Side
from entrustments.port import EntrustmentStore
from entrustments.views import entrustment_view, entrustments_topic
from event_bus.port import EventBus
from operations.desk import ASSIGN_ATTEMPTS, DutyLog
from tasks.models import LIVE, Task, TaskKind

log = logging.getLogger(__name__)


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


class Alarms(Protocol):
    """The alarm desk (``alarms.desk.AlarmDesk``): raises the overdue alarm, resolves it when the entrustment ends."""

    async def raise_(
        self,
        kind: AlarmKind,
        subject: str,
        *,
        court_id: CourtId,
        unit_id: UnitId | None = None,
        details: dict[str, Any] | None = None,
    ) -> object: ...

    async def clear(self, kind: AlarmKind, subject: str) -> object: ...


def overdue_subject(entrustment_id: str, court_id: CourtId) -> str:
    """The overdue alarm's subject: one alarm per entrustment and court (each court's wall shows its own)."""
    return f"{entrustment_id}@{court_id}"


class Auditor(Protocol):
    """The hash-chained audit log (``query_control.audit.AuditLog``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> object: ...


STEP_WORDS = {
    "requested": "委托请求", "accepted": "已受理", "refused": "已退回", "units": "派出单元", "report": "进展",
    "completed": "已办结", "withdrawn": "已撤回", "overdue": "已超期",
}  # fmt: skip


class EntrustmentDesk:
    def __init__(
        self,
        store: EntrustmentDeskStore,
        tasks: EntrustedTasks,
        audit: Auditor,
        bus: EventBus,
        alarms: Alarms,
        *,
        cluster: Coordinator | None = None,
        sweep_seconds: float = 30.0,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        """``cluster``: the overdue sweep runs only in the process holding the leader lease, and its marks are
        fenced with that grant; ``sweep_seconds``: how often it looks."""
        self._store = store
        self._tasks = tasks
        self._audit = audit
        self._bus = bus
        self._alarms = alarms
        self._cluster = cluster
        self._sweep_seconds = sweep_seconds
        self._clock_ms = clock_ms
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="entrustments-overdue-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

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
            if moved.overdue_ms is not None:
                for court_id in (moved.from_court_id, moved.to_court_id):
                    await self._alarms.clear(AlarmKind.ENTRUSTMENT_OVERDUE, overdue_subject(moved.id, court_id))
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

    # the deadline ---------------------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            if self._cluster is not None and not self._cluster.holds(LEADER):
                continue
            try:
                await self.sweep_overdue()
            except FencedOut:
                log.info("entrustments: another process leads now; its sweep marks the overdue ones")
            except Exception:
                log.exception("entrustments: overdue sweep failed")

    async def sweep_overdue(self) -> int:
        """Mark each entrustment live past its deadline overdue, once (the mark is a compare-and-set under the
        leader's fence, so a paused former leader cannot mark it again), raise its alarm on both courts' walls
        and audit it. Returns how many this sweep marked."""
        marked = 0
        for e in await self._store.overdue_entrustments(self._clock_ms()):
            fence = fence_of(self._cluster, LEADER)
            overdue = await self._store.mark_entrustment_overdue(e.id, at_ms=self._clock_ms(), fence=fence)
            if overdue is None:
                continue  # ended or marked meanwhile
            marked += 1
            details = {"entrustment_id": e.id, "task": e.task, "from_court_id": e.from_court_id,
                       "to_court_id": e.to_court_id, "deadline_ms": e.deadline_ms,
                       "status": e.status.value}  # fmt: skip
            for court_id in (e.from_court_id, e.to_court_id):
                await self._alarms.raise_(AlarmKind.ENTRUSTMENT_OVERDUE, overdue_subject(e.id, court_id),
                                          court_id=court_id, details=details)  # fmt: skip
            await self._step(overdue, "overdue", Side.RECEIVING, "已超过委托期限，尚未办结", None)
        return marked

    async def _step(
        self,
        e: Entrustment,
        kind: str,
        side: Side,
        text: str,
        user_id: UserId | None,
        ref: dict[str, Any] | None = None,
    ) -> EntrustmentEvent:
        """Store the step, tell both courts' duty logs (the system's note when no person took it, e.g. overdue)
        and screens, and audit it."""
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
        await self._publish(e, kind, text, at)
        return event

    async def _publish(self, e: Entrustment, kind: str, text: str, at_ms: int) -> None:
        message = {"event": kind, "entrustment": entrustment_view(e), "text": text, "at_ms": at_ms}
        for court_id in (e.from_court_id, e.to_court_id):
            try:
                await self._bus.publish(entrustments_topic(court_id), message)
            except Exception:  # stored: the screens get it in their next snapshot
                log.warning("entrustment %s: could not publish %s to court %s", e.id, kind, court_id, exc_info=True)


def tasks_sent(events: Sequence[EntrustmentEvent]) -> dict[str, str]:
    """The go-to task last sent to each unit for the entrustment (unit id → task id), from its timeline."""
    sent: dict[str, str] = {}
    for event in events:
        if event.kind == "units":
            sent |= event.ref.get("task_ids", {})
    return sent
