"""Enforcement operations (``operations.port``), written once for both databases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import Conflict, NotFound
from core.ids import CaseId, CourtId, UnitId, UserId
from operations.models import Operation, OperationEvent, OperationKind, OperationStatus
from persistence.database import Database, Row


def operation_from_row(r: Row) -> Operation:
    return Operation(r["id"], CourtId(r["court_id"]), OperationKind(r["kind"]), r["title"],
                     None if r["case_id"] is None else CaseId(r["case_id"]), UserId(r["commander_id"]),
                     r["onsite_commander"], json.loads(r["target"]),
                     tuple(UnitId(u) for u in json.loads(r["unit_ids"])), OperationStatus(r["status"]),
                     UserId(r["created_by"]), r["created_ms"], r["started_ms"], r["ended_ms"])  # fmt: skip


def operation_row(o: Operation) -> tuple[Any, ...]:
    return (o.id, o.court_id, o.kind.value, o.title, o.case_id, o.commander_id, o.onsite_commander,
            json.dumps(o.target, ensure_ascii=False, sort_keys=True), json.dumps(list(o.unit_ids)),
            o.status.value, o.created_by, o.created_ms, o.started_ms, o.ended_ms)  # fmt: skip


def event_from_row(r: Row) -> OperationEvent:
    return OperationEvent(r["id"], r["operation_id"], r["at_ms"], r["kind"],
                          None if r["user_id"] is None else UserId(r["user_id"]), r["text"],
                          json.loads(r["ref"]))  # fmt: skip


# started_ms / ended_ms stamped by a move to this status
STAMP = {OperationStatus.UNDER_WAY: "started_ms", OperationStatus.CONCLUDED: "ended_ms",
         OperationStatus.CANCELLED: "ended_ms"}  # fmt: skip


class OperationsSql:
    if TYPE_CHECKING:
        database: Database

    async def add_operation(self, operation: Operation) -> Operation:
        try:
            row = await self.database.fetchrow(
                "INSERT INTO operations (id, court_id, kind, title, case_id, commander_id, onsite_commander, target,"
                " unit_ids, status, created_by, created_ms, started_ms, ended_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *",
                *operation_row(operation),
            )
        except Conflict:
            raise Conflict(f"operation {operation.id} exists") from None
        except NotFound:
            raise NotFound("operation refers to a court, case or user that does not exist") from None
        assert row is not None
        return operation_from_row(row)

    async def get_operation(self, operation_id: str) -> Operation:
        row = await self.database.fetchrow("SELECT * FROM operations WHERE id = $1", operation_id)
        if row is None:
            raise NotFound(f"operation {operation_id} does not exist")
        return operation_from_row(row)

    async def list_operations(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        rows = await self.database.fetch(
            "SELECT * FROM operations WHERE ($1::text[] IS NULL OR court_id = ANY($1))"
            " AND ($2::text[] IS NULL OR status = ANY($2)) ORDER BY created_ms DESC, id",
            None if court_ids is None else list(court_ids), None if statuses is None else [s.value for s in statuses],
        )  # fmt: skip
        return [operation_from_row(r) for r in rows]

    async def move_operation(
        self, operation_id: str, status: OperationStatus, *, allowed: Sequence[OperationStatus], at_ms: int
    ) -> Operation | None:
        row = await self.database.fetchrow(
            f"UPDATE operations SET status = $2, {STAMP[status]} = $3 WHERE id = $1 AND status = ANY($4) RETURNING *",
            operation_id, status.value, at_ms, [s.value for s in allowed],
        )  # fmt: skip
        if row is None:
            await self.get_operation(operation_id)
            return None
        return operation_from_row(row)

    async def set_operation_units(
        self,
        operation_id: str,
        unit_ids: Sequence[UnitId],
        *,
        allowed: Sequence[OperationStatus] | None = None,
        replacing: Sequence[UnitId] | None = None,
    ) -> Operation | None:
        row = await self.database.fetchrow(
            "UPDATE operations SET unit_ids = $2 WHERE id = $1 AND ($3::text[] IS NULL OR status = ANY($3))"
            " AND ($4::text IS NULL OR unit_ids = $4) RETURNING *",
            operation_id, json.dumps(list(unit_ids)), None if allowed is None else [s.value for s in allowed],
            None if replacing is None else json.dumps(list(replacing)),
        )  # fmt: skip
        if row is None:
            await self.get_operation(operation_id)  # NotFound for an unknown one
            return None
        return operation_from_row(row)

    async def add_operation_event(
        self, operation_id: str, *, kind: str, text: str, at_ms: int, user_id: UserId | None, ref: dict[str, Any]
    ) -> OperationEvent:
        row = await self.database.fetchrow(
            "INSERT INTO operation_events (operation_id, at_ms, kind, user_id, text, ref)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            operation_id, at_ms, kind, user_id, text, json.dumps(ref, ensure_ascii=False),
        )  # fmt: skip
        assert row is not None
        return event_from_row(row)

    async def operation_events(self, operation_id: str) -> list[OperationEvent]:
        rows = await self.database.fetch(
            "SELECT * FROM operation_events WHERE operation_id = $1 ORDER BY at_ms, id", operation_id
        )
        return [event_from_row(r) for r in rows]
