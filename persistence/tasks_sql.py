"""Tasks to units (``tasks.port``), written once for both databases (``persistence.database``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import Conflict, NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.database import Database, Row
from tasks.models import Task, TaskKind, TaskStatus


def task_from_row(r: Row) -> Task:
    """One row of ``unit_tasks`` as a Task."""
    return Task(r["id"], UnitId(r["unit_id"]), CourtId(r["court_id"]), TaskKind(r["kind"]), r["title"],
                json.loads(r["details"]), UserId(r["created_by"]), r["created_ms"], r["due_ms"],
                TaskStatus(r["status"]), r["updated_ms"], r["note"])  # fmt: skip


def task_row(task: Task) -> tuple[Any, ...]:
    return (task.id, task.unit_id, task.court_id, task.kind.value, task.title,
            json.dumps(task.details, ensure_ascii=False, sort_keys=True), task.created_by, task.created_ms,
            task.due_ms, task.status.value, task.updated_ms, task.note)  # fmt: skip


class TasksSql:
    if TYPE_CHECKING:
        database: Database

    async def add_task(self, task: Task) -> Task:
        try:
            row = await self.database.fetchrow(
                "INSERT INTO unit_tasks (id, unit_id, court_id, kind, title, details, created_by, created_ms,"
                " due_ms, status, updated_ms, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " RETURNING *",
                *task_row(task),
            )
        except Conflict:
            raise Conflict(f"task {task.id} exists") from None
        assert row is not None
        return task_from_row(row)

    async def get_task(self, task_id: str) -> Task:
        row = await self.database.fetchrow("SELECT * FROM unit_tasks WHERE id = $1", task_id)
        if row is None:
            raise NotFound(f"task {task_id} does not exist")
        return task_from_row(row)

    async def list_tasks(
        self,
        *,
        unit_id: UnitId | None = None,
        court_ids: Sequence[CourtId] | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 500,
    ) -> list[Task]:
        rows = await self.database.fetch(
            "SELECT * FROM unit_tasks WHERE ($1::text IS NULL OR unit_id = $1)"
            " AND ($2::text[] IS NULL OR court_id = ANY($2)) AND ($3::text[] IS NULL OR status = ANY($3))"
            " ORDER BY created_ms DESC, id LIMIT $4",
            unit_id, None if court_ids is None else list(court_ids),
            None if statuses is None else [s.value for s in statuses], limit,
        )  # fmt: skip
        return [task_from_row(r) for r in rows]

    async def move_task(
        self, task_id: str, status: TaskStatus, *, allowed: Sequence[TaskStatus], at_ms: int, note: str | None
    ) -> Task | None:
        row = await self.database.fetchrow(
            "UPDATE unit_tasks SET status = $2, updated_ms = $3, note = COALESCE($4, note)"
            " WHERE id = $1 AND status = ANY($5) RETURNING *",
            task_id, status.value, at_ms, note, [s.value for s in allowed],
        )  # fmt: skip
        if row is None:
            await self.get_task(task_id)  # NotFound when there is no such task
            return None
        return task_from_row(row)
