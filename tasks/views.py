"""What screens, the API and the unit itself receive of a task (docs/protocols.md)."""

from __future__ import annotations

from typing import Any

from tasks.models import Task


def task_view(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "unit_id": task.unit_id,
        "court_id": task.court_id,
        "kind": task.kind.value,
        "title": task.title,
        "details": task.details,
        "created_by": task.created_by,
        "created_ms": task.created_ms,
        "due_ms": task.due_ms,
        "status": task.status.value,
        "updated_ms": task.updated_ms,
        "note": task.note,
    }
