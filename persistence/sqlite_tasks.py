"""Tasks to units on SQLite (see ``task_port``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.errors import NotFound
from core.ids import CourtId, UnitId
from persistence.postgres_tasks import task_from_row, task_row
from tasks.models import Task, TaskStatus


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values)) or "NULL"


class SqliteTasks:
    if TYPE_CHECKING:

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def add_task(self, task: Task) -> Task:
        rows = await self._q(
            "INSERT INTO unit_tasks (id, unit_id, court_id, kind, title, details, created_by, created_ms, due_ms,"
            " status, updated_ms, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            task_row(task),
        )
        return task_from_row(rows[0])

    async def get_task(self, task_id: str) -> Task:
        rows = await self._q("SELECT * FROM unit_tasks WHERE id = ?", (task_id,))
        if not rows:
            raise NotFound(f"task {task_id} does not exist")
        return task_from_row(rows[0])

    async def list_tasks(
        self,
        *,
        unit_id: UnitId | None = None,
        court_ids: Sequence[CourtId] | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 500,
    ) -> list[Task]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if unit_id is not None:
            where.append("unit_id = ?")
            params.append(unit_id)
        if court_ids is not None:
            where.append(f"court_id IN ({_marks(court_ids)})")
            params.extend(court_ids)
        if statuses is not None:
            where.append(f"status IN ({_marks(statuses)})")
            params.extend(s.value for s in statuses)
        rows = await self._q(
            f"SELECT * FROM unit_tasks WHERE {' AND '.join(where)} ORDER BY created_ms DESC, id LIMIT ?",
            (*params, limit),
        )
        return [task_from_row(r) for r in rows]

    async def move_task(
        self, task_id: str, status: TaskStatus, *, allowed: Sequence[TaskStatus], at_ms: int, note: str | None
    ) -> Task | None:
        rows = await self._q(
            "UPDATE unit_tasks SET status = ?, updated_ms = ?, note = COALESCE(?, note)"
            f" WHERE id = ? AND status IN ({_marks(allowed)}) RETURNING *",
            (status.value, at_ms, note, task_id, *(s.value for s in allowed)),
        )
        if not rows:
            await self.get_task(task_id)
            return None
        return task_from_row(rows[0])
