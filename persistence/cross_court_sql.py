"""Cross-court command, written once for both databases (``persistence.database``): the courts taking part
in an operation (``operations.port``) and entrustments between courts (``entrustments.port``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import Conflict, NotFound
from core.fencing import Fence
from core.ids import CourtId, UnitId, UserId
from entrustments.models import LIVE_ENTRUSTMENTS, Entrustment, EntrustmentEvent, EntrustmentStatus
from operations.models import Operation, OperationStatus
from persistence.database import Database, Row
from persistence.operations_sql import operation_from_row
from persistence.queries_sql import _hold_fence

# decided_ms / ended_ms stamped by a move to this status
ENTRUSTMENT_STAMPS: dict[EntrustmentStatus, tuple[str, ...]] = {
    EntrustmentStatus.ACCEPTED: ("decided_ms",),
    EntrustmentStatus.REFUSED: ("decided_ms", "ended_ms"),
    EntrustmentStatus.COMPLETED: ("ended_ms",),
    EntrustmentStatus.WITHDRAWN: ("ended_ms",),
}


def entrustment_from_row(r: Row) -> Entrustment:
    return Entrustment(r["id"], CourtId(r["from_court_id"]), CourtId(r["to_court_id"]), r["task"], r["address"],
                       r["lat"], r["lon"], r["deadline_ms"], r["reason"], EntrustmentStatus(r["status"]),
                       tuple(UnitId(u) for u in json.loads(r["unit_ids"])), UserId(r["created_by"]),
                       r["created_ms"], r["decided_ms"], r["ended_ms"], r["overdue_ms"])  # fmt: skip


def entrustment_row(e: Entrustment) -> tuple[Any, ...]:
    return (e.id, e.from_court_id, e.to_court_id, e.task, e.address, e.lat, e.lon, e.deadline_ms, e.reason,
            e.status.value, json.dumps(list(e.unit_ids)), e.created_by, e.created_ms, e.decided_ms,
            e.ended_ms)  # fmt: skip


def entrustment_event_from_row(r: Row) -> EntrustmentEvent:
    return EntrustmentEvent(r["id"], r["entrustment_id"], r["at_ms"], r["kind"], CourtId(r["court_id"]),
                            None if r["user_id"] is None else UserId(r["user_id"]), r["text"],
                            json.loads(r["ref"]))  # fmt: skip


def stamps_sql(status: EntrustmentStatus, first: int) -> str:
    """``decided_ms = $n, ended_ms = $n`` for the columns a move to ``status`` stamps."""
    return ", ".join(f"{column} = ${first}" for column in ENTRUSTMENT_STAMPS[status])


class CrossCourtSql:
    if TYPE_CHECKING:
        database: Database

    # operations with units of several courts ----------------------------------------------------------
    async def set_operation_courts(self, operation_id: str, court_ids: Sequence[CourtId]) -> list[CourtId]:
        wanted = list(dict.fromkeys(court_ids))
        async with self.database.transaction() as conn:
            await conn.execute("DELETE FROM operation_courts WHERE operation_id = $1 AND NOT court_id = ANY($2)",
                               operation_id, wanted)  # fmt: skip
            courts, args = conn.rows_table(2, [("court_id", "text")], [(c,) for c in wanted])
            rows = await conn.fetch(
                f"INSERT INTO operation_courts (operation_id, court_id) SELECT $1, v.court_id FROM {courts}"
                " WHERE true ON CONFLICT DO NOTHING RETURNING court_id",
                operation_id, *args,
            )  # fmt: skip
        added = {r["court_id"] for r in rows}
        return [c for c in wanted if c in added]

    async def operation_courts(self, operation_id: str) -> list[CourtId]:
        rows = await self.database.fetch(
            "SELECT court_id FROM operation_courts WHERE operation_id = $1 ORDER BY court_id", operation_id
        )
        return [CourtId(r["court_id"]) for r in rows]

    async def operations_with_units_of(
        self, court_ids: Sequence[CourtId], *, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        rows = await self.database.fetch(
            "SELECT * FROM operations o WHERE EXISTS (SELECT 1 FROM operation_courts c WHERE c.operation_id = o.id"
            " AND c.court_id = ANY($1)) AND ($2::text[] IS NULL OR o.status = ANY($2))"
            " ORDER BY o.created_ms DESC, o.id",
            list(court_ids), None if statuses is None else [s.value for s in statuses],
        )  # fmt: skip
        return [operation_from_row(r) for r in rows]

    # entrustments ---------------------------------------------------------------------------------------
    async def add_entrustment(self, entrustment: Entrustment) -> Entrustment:
        try:
            row = await self.database.fetchrow(
                "INSERT INTO entrustments (id, from_court_id, to_court_id, task, address, lat, lon, deadline_ms,"
                " reason, status, unit_ids, created_by, created_ms, decided_ms, ended_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING *",
                *entrustment_row(entrustment),
            )
        except Conflict:
            raise Conflict(f"entrustment {entrustment.id} exists") from None
        except NotFound:
            raise NotFound("the entrustment names a court or user that does not exist") from None
        assert row is not None
        return entrustment_from_row(row)

    async def get_entrustment(self, entrustment_id: str) -> Entrustment:
        row = await self.database.fetchrow("SELECT * FROM entrustments WHERE id = $1", entrustment_id)
        if row is None:
            raise NotFound(f"entrustment {entrustment_id} does not exist")
        return entrustment_from_row(row)

    async def list_entrustments(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[EntrustmentStatus] | None
    ) -> list[Entrustment]:
        rows = await self.database.fetch(
            "SELECT * FROM entrustments WHERE ($1::text[] IS NULL OR from_court_id = ANY($1) OR to_court_id = ANY($1))"
            " AND ($2::text[] IS NULL OR status = ANY($2)) ORDER BY created_ms DESC, id",
            None if court_ids is None else list(court_ids), None if statuses is None else [s.value for s in statuses],
        )  # fmt: skip
        return [entrustment_from_row(r) for r in rows]

    async def move_entrustment(
        self, entrustment_id: str, status: EntrustmentStatus, *, allowed: Sequence[EntrustmentStatus], at_ms: int
    ) -> Entrustment | None:
        row = await self.database.fetchrow(
            f"UPDATE entrustments SET status = $2, {stamps_sql(status, 3)} WHERE id = $1 AND status = ANY($4)"
            " RETURNING *",
            entrustment_id, status.value, at_ms, [s.value for s in allowed],
        )  # fmt: skip
        if row is None:
            await self.get_entrustment(entrustment_id)
            return None
        return entrustment_from_row(row)

    async def set_entrustment_units(
        self,
        entrustment_id: str,
        unit_ids: Sequence[UnitId],
        *,
        allowed: Sequence[EntrustmentStatus],
        replacing: Sequence[UnitId] | None = None,
    ) -> Entrustment | None:
        row = await self.database.fetchrow(
            "UPDATE entrustments SET unit_ids = $2 WHERE id = $1 AND status = ANY($3)"
            " AND ($4::text IS NULL OR unit_ids = $4) RETURNING *",
            entrustment_id, json.dumps(list(unit_ids)), [s.value for s in allowed],
            None if replacing is None else json.dumps(list(replacing)),
        )  # fmt: skip
        if row is None:
            await self.get_entrustment(entrustment_id)
            return None
        return entrustment_from_row(row)

    async def add_entrustment_event(
        self,
        entrustment_id: str,
        *,
        kind: str,
        court_id: CourtId,
        text: str,
        at_ms: int,
        user_id: UserId | None,
        ref: dict[str, Any],
    ) -> EntrustmentEvent:
        row = await self.database.fetchrow(
            "INSERT INTO entrustment_events (entrustment_id, at_ms, kind, court_id, user_id, text, ref)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            entrustment_id, at_ms, kind, court_id, user_id, text, json.dumps(ref, ensure_ascii=False),
        )  # fmt: skip
        assert row is not None
        return entrustment_event_from_row(row)

    async def entrustment_events(self, entrustment_id: str) -> list[EntrustmentEvent]:
        rows = await self.database.fetch(
            "SELECT * FROM entrustment_events WHERE entrustment_id = $1 ORDER BY at_ms, id", entrustment_id
        )
        return [entrustment_event_from_row(r) for r in rows]

    async def overdue_entrustments(self, now_ms: int) -> list[Entrustment]:
        rows = await self.database.fetch(
            "SELECT * FROM entrustments WHERE status = ANY($1) AND deadline_ms < $2 AND overdue_ms IS NULL"
            " ORDER BY deadline_ms, id",
            [s.value for s in LIVE_ENTRUSTMENTS], now_ms,
        )  # fmt: skip
        return [entrustment_from_row(r) for r in rows]

    async def mark_entrustment_overdue(
        self, entrustment_id: str, *, at_ms: int, fence: Fence | None
    ) -> Entrustment | None:
        async with self.database.transaction() as conn:
            await _hold_fence(conn, fence)
            row = await conn.fetchrow(
                "UPDATE entrustments SET overdue_ms = $2 WHERE id = $1 AND overdue_ms IS NULL AND status = ANY($3)"
                " AND deadline_ms < $2 RETURNING *",
                entrustment_id, at_ms, [s.value for s in LIVE_ENTRUSTMENTS],
            )  # fmt: skip
        return None if row is None else entrustment_from_row(row)
