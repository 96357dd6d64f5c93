"""The storage tasks to units need; part of the ``Store`` port. Status moves are compare-and-set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.ids import CourtId, UnitId
from tasks.models import Task, TaskStatus


class TaskStore(Protocol):
    async def add_task(self, task: Task) -> Task:
        """Conflict when a task with this id exists."""

    async def get_task(self, task_id: str) -> Task: ...

    async def list_tasks(
        self,
        *,
        unit_id: UnitId | None = None,
        court_ids: Sequence[CourtId] | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 500,
    ) -> list[Task]:
        """Newest first; None filters nothing."""

    async def move_task(
        self, task_id: str, status: TaskStatus, *, allowed: Sequence[TaskStatus], at_ms: int, note: str | None
    ) -> Task | None:
        """Set the status if the task is in one of ``allowed``; None otherwise (NotFound if no such task)."""
