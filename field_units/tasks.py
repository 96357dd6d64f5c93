"""Tasks to field units (派警任务): created by the command centre, delivered over the unit's live channel,
reported on by the unit.

Delivery is at-least-once and never lost: a task is stored first (``queued``); a unit whose channel is
open gets it at once (``delivered``); every time a unit (re)connects it is sent each task it has not yet
acknowledged, so a task for an offline unit arrives when it is back. The unit acknowledges by task id
(its client ignores an id it already has). A unit's channel follows the bus topic ``unit_tasks.<unit>``,
so a task created on any server process reaches the process holding that unit's socket. Every change is
published on ``tasks.<court>`` for the screens. A task past its due time raises a ``task_overdue`` alarm,
which closes itself when the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from alarms.desk import AlarmDesk
from alarms.models import AlarmKind
from cluster.port import LEADER, Coordinator
from core.errors import Conflict, ValidationFailed
from core.ids import CourtId, UnitId, UserId
from event_bus.port import EventBus
from persistence.models import Unit
from persistence.port import UnitStore
from tasks.models import LIVE, UNDELIVERED, UNIT_MOVES, Task, TaskKind, TaskStatus, check_move
from tasks.port import TaskStore
from tasks.views import task_view

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
OVERDUE_SWEEP_SECONDS = 5.0
MAX_NOTE = 500


class TaskDeskStore(TaskStore, UnitStore, Protocol):
    """What the task desk needs of storage: the tasks and the units they go to."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def unit_tasks_topic(unit_id: UnitId) -> str:
    return f"unit_tasks.{unit_id}"


def tasks_topic(court_id: CourtId) -> str:
    return f"tasks.{court_id}"


class TaskDesk:
    def __init__(
        self,
        store: TaskDeskStore,
        bus: EventBus,
        alarms: AlarmDesk,
        *,
        cluster: Coordinator | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._cluster = cluster  # with several processes, only the leader sweeps for overdue tasks
        self._store = store
        self._bus = bus
        self._alarms = alarms
        self._clock_ms = clock_ms
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="task-overdue-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # the command centre -------------------------------------------------------------------------------
    async def create(
        self,
        unit: Unit,
        kind: TaskKind,
        title: str,
        *,
        created_by: UserId,
        details: dict[str, Any] | None = None,
        due_ms: int | None = None,
    ) -> Task:
        now = self._clock_ms()
        task = Task(uuid.uuid4().hex, unit.id, unit.court_id, kind, title, details or {}, created_by, now, due_ms,
                    TaskStatus.QUEUED, now, None)  # fmt: skip
        task = await self._store.add_task(task)
        log.info("task %s for %s: %s (%s)", task.id, unit.id, kind.value, title)
        await self._changed(task)
        await self._bus.publish(unit_tasks_topic(unit.id), {"event": "task", "task_id": task.id})
        return task

    async def create_for(
        self, unit_id: UnitId, kind: TaskKind, title: str, *, created_by: UserId, details: dict[str, Any]
    ) -> Task:
        """``create`` for a unit known only by id (NotFound when there is none): how an operation sends its
        units to the target without needing the store's unit records (``operations.desk.UnitTasks``)."""
        return await self.create(
            await self._store.get_unit(unit_id), kind, title, created_by=created_by, details=details
        )

    async def cancel(self, task: Task, *, note: str | None) -> Task:
        moved = await self._store.move_task(
            task.id, TaskStatus.CANCELLED, allowed=LIVE, at_ms=self._clock_ms(), note=note
        )
        if moved is None:
            check_move((await self._store.get_task(task.id)).status, TaskStatus.CANCELLED, LIVE)
        assert moved is not None
        await self._changed(moved)
        await self._bus.publish(unit_tasks_topic(task.unit_id), {"event": "cancelled", "task_id": task.id})
        return moved

    # the unit's channel -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def channel(self, unit: Unit, send: Send) -> AsyncIterator[None]:
        """While the unit's channel is open: send it every task it has not acknowledged, then each new one
        (and each cancellation) as it happens."""
        async with self._bus.subscribe([unit_tasks_topic(unit.id)]) as subscription:
            try:
                for task in reversed(await self._store.list_tasks(unit_id=unit.id, statuses=UNDELIVERED)):
                    await self._deliver(task, send)
            except (ConnectionError, RuntimeError):
                raise
            except Exception:  # the database is down: the unit's telemetry must not suffer for it
                log.warning("tasks: cannot load %s's undelivered tasks now; they go out on its next connection",
                            unit.id, exc_info=True)  # fmt: skip
            forwarder = asyncio.create_task(self._forward(subscription, send), name=f"tasks:{unit.id}")
            try:
                yield
            finally:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder

    async def _forward(self, subscription: Any, send: Send) -> None:
        while True:
            event = await subscription.get()
            try:
                task = await self._store.get_task(event.data["task_id"])
                if event.data["event"] == "cancelled":
                    await send({"type": "task_cancelled", "task_id": task.id, "note": task.note})
                elif task.status in UNDELIVERED:
                    await self._deliver(task, send)
            except (ConnectionError, RuntimeError):
                return  # the channel closed under us; the task stays undelivered for the next connection
            except Exception:
                log.exception("tasks: forwarding %s failed", event.data)

    async def _deliver(self, task: Task, send: Send) -> None:
        await send({"type": "task", "task": task_view(task)})
        moved = await self._store.move_task(
            task.id, TaskStatus.DELIVERED, allowed=(TaskStatus.QUEUED,), at_ms=self._clock_ms(), note=None
        )
        if moved is not None:
            await self._changed(moved)

    async def report(self, unit: Unit, data: dict[str, Any]) -> dict[str, Any]:
        """A unit's ``task_update`` message → the reply for it (``task_ack``); ValidationFailed, NotFound or
        Conflict with a precise message otherwise."""
        task_id, raw_status, note = data.get("task_id"), data.get("status"), data.get("note")
        if not isinstance(task_id, str) or not task_id:
            raise ValidationFailed("task_update needs task_id (a string)")
        try:
            status = TaskStatus(str(raw_status))
        except ValueError:
            raise ValidationFailed(
                f"status must be one of {', '.join(s.value for s in UNIT_MOVES)}; got {raw_status!r}"
            ) from None
        if status not in UNIT_MOVES:
            raise ValidationFailed(f"a unit may not report {status.value}")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise ValidationFailed(f"note must be text of at most {MAX_NOTE} characters")
        task = await self._store.get_task(task_id)
        if task.unit_id != unit.id:
            raise ValidationFailed(f"task {task_id} is not this unit's")
        if task.status is status:
            return {"type": "task_ack", "task_id": task.id, "status": status.value}  # a repeated report
        moved = await self._store.move_task(
            task.id, status, allowed=UNIT_MOVES[status], at_ms=self._clock_ms(), note=note
        )
        if moved is None:
            check_move((await self._store.get_task(task.id)).status, status, UNIT_MOVES[status])
            raise Conflict(f"task {task.id} changed meanwhile")
        await self._changed(moved)
        return {"type": "task_ack", "task_id": moved.id, "status": moved.status.value}

    # screens and alarms -------------------------------------------------------------------------------
    async def _changed(self, task: Task) -> None:
        try:
            await self._bus.publish(tasks_topic(task.court_id), {"task": task_view(task)})
        except Exception:  # stored: screens see it in their next snapshot
            log.warning("task %s: could not publish", task.id, exc_info=True)
        if task.status not in LIVE and task.due_ms is not None:
            await self._alarms.clear(AlarmKind.TASK_OVERDUE, task.id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(OVERDUE_SWEEP_SECONDS)
            if self._cluster is not None and not self._cluster.holds(LEADER):
                continue
            try:
                await self.sweep_overdue()
            except Exception:
                log.exception("tasks: overdue sweep failed")

    async def sweep_overdue(self) -> int:
        """Raise a task_overdue alarm for each live task past its due time; how many are overdue."""
        now = self._clock_ms()
        overdue = [t for t in await self._store.list_tasks(statuses=LIVE, limit=10_000)
                   if t.due_ms is not None and t.due_ms < now]  # fmt: skip
        for task in overdue:
            await self._alarms.raise_(
                AlarmKind.TASK_OVERDUE, task.id, court_id=task.court_id, unit_id=task.unit_id,
                details={"title": task.title, "due_ms": task.due_ms, "task_status": task.status.value},
            )  # fmt: skip
        return len(overdue)
