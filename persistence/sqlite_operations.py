"""Enforcement operations on SQLite (see ``operations.port``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from operations.models import Operation, OperationEvent, OperationStatus
from persistence.postgres_operations import STAMP, event_from_row, operation_from_row, operation_row


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values)) or "NULL"


class SqliteOperations:
    if TYPE_CHECKING:

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def add_operation(self, operation: Operation) -> Operation:
        rows = await self._q(
            "INSERT INTO operations (id, court_id, kind, title, case_id, commander_id, onsite_commander, target,"
            " unit_ids, status, created_by, created_ms, started_ms, ended_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            operation_row(operation),
        )
        return operation_from_row(rows[0])

    async def get_operation(self, operation_id: str) -> Operation:
        rows = await self._q("SELECT * FROM operations WHERE id = ?", (operation_id,))
        if not rows:
            raise NotFound(f"operation {operation_id} does not exist")
        return operation_from_row(rows[0])

    async def list_operations(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if court_ids is not None:
            where.append(f"court_id IN ({_marks(court_ids)})")
            params.extend(court_ids)
        if statuses is not None:
            where.append(f"status IN ({_marks(statuses)})")
            params.extend(s.value for s in statuses)
        rows = await self._q(f"SELECT * FROM operations WHERE {' AND '.join(where)} ORDER BY created_ms DESC, id",
                             params)  # fmt: skip
        return [operation_from_row(r) for r in rows]

    async def move_operation(
        self, operation_id: str, status: OperationStatus, *, allowed: Sequence[OperationStatus], at_ms: int
    ) -> Operation | None:
        rows = await self._q(
            f"UPDATE operations SET status = ?, {STAMP[status]} = ? WHERE id = ? AND status IN ({_marks(allowed)})"
            " RETURNING *",
            (status.value, at_ms, operation_id, *(s.value for s in allowed)),
        )
        if not rows:
            await self.get_operation(operation_id)
            return None
        return operation_from_row(rows[0])

    async def set_operation_units(self, operation_id: str, unit_ids: Sequence[UnitId]) -> Operation:
        rows = await self._q("UPDATE operations SET unit_ids = ? WHERE id = ? RETURNING *",
                             (json.dumps(list(unit_ids)), operation_id))  # fmt: skip
        if not rows:
            raise NotFound(f"operation {operation_id} does not exist")
        return operation_from_row(rows[0])

    async def add_operation_event(
        self, operation_id: str, *, kind: str, text: str, at_ms: int, user_id: UserId | None, ref: dict[str, Any]
    ) -> OperationEvent:
        rows = await self._q(
            "INSERT INTO operation_events (operation_id, at_ms, kind, user_id, text, ref) VALUES (?, ?, ?, ?, ?, ?)"
            " RETURNING *",
            (operation_id, at_ms, kind, user_id, text, json.dumps(ref, ensure_ascii=False)),
        )
        return event_from_row(rows[0])

    async def operation_events(self, operation_id: str) -> list[OperationEvent]:
        rows = await self._q("SELECT * FROM operation_events WHERE operation_id = ? ORDER BY at_ms, id",
                             (operation_id,))  # fmt: skip
        return [event_from_row(r) for r in rows]
