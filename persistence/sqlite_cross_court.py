"""Cross-court command on SQLite (see ``persistence.postgres_cross_court``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from entrustments.models import Entrustment, EntrustmentEvent, EntrustmentStatus
from operations.models import Operation, OperationStatus
from persistence.postgres_cross_court import (
    entrustment_event_from_row,
    entrustment_from_row,
    entrustment_row,
    stamps_sql,
)
from persistence.postgres_operations import operation_from_row


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values)) or "NULL"


class SqliteCrossCourt:
    if TYPE_CHECKING:

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    # operations with units of several courts ----------------------------------------------------------
    async def set_operation_courts(self, operation_id: str, court_ids: Sequence[CourtId]) -> list[CourtId]:
        wanted = list(dict.fromkeys(court_ids))
        added: list[CourtId] = []
        async with self._tx() as db:  # the old set replaced by the new in one transaction
            stale = f"DELETE FROM operation_courts WHERE operation_id = ? AND court_id NOT IN ({_marks(wanted)})"
            await db.execute(stale, (operation_id, *wanted))
            for court_id in wanted:
                cursor = await db.execute(
                    "INSERT INTO operation_courts (operation_id, court_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
                    " RETURNING court_id",
                    (operation_id, court_id),
                )
                added.extend(CourtId(r["court_id"]) for r in await cursor.fetchall())
                await cursor.close()
        return added

    async def operation_courts(self, operation_id: str) -> list[CourtId]:
        rows = await self._q("SELECT court_id FROM operation_courts WHERE operation_id = ? ORDER BY court_id",
                             (operation_id,))  # fmt: skip
        return [CourtId(r["court_id"]) for r in rows]

    async def operations_with_units_of(
        self, court_ids: Sequence[CourtId], *, statuses: Sequence[OperationStatus] | None
    ) -> list[Operation]:
        sql = ("SELECT * FROM operations o WHERE EXISTS (SELECT 1 FROM operation_courts c WHERE c.operation_id = o.id"
               f" AND c.court_id IN ({_marks(court_ids)}))")  # fmt: skip
        params: list[Any] = list(court_ids)
        if statuses is not None:
            sql += f" AND o.status IN ({_marks(statuses)})"
            params.extend(s.value for s in statuses)
        rows = await self._q(sql + " ORDER BY o.created_ms DESC, o.id", params)
        return [operation_from_row(r) for r in rows]

    # entrustments ---------------------------------------------------------------------------------------
    async def add_entrustment(self, entrustment: Entrustment) -> Entrustment:
        rows = await self._q(
            "INSERT INTO entrustments (id, from_court_id, to_court_id, task, address, lat, lon, deadline_ms,"
            " reason, status, unit_ids, created_by, created_ms, decided_ms, ended_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            entrustment_row(entrustment),
        )
        return entrustment_from_row(rows[0])

    async def get_entrustment(self, entrustment_id: str) -> Entrustment:
        rows = await self._q("SELECT * FROM entrustments WHERE id = ?", (entrustment_id,))
        if not rows:
            raise NotFound(f"entrustment {entrustment_id} does not exist")
        return entrustment_from_row(rows[0])

    async def list_entrustments(
        self, *, court_ids: Sequence[CourtId] | None, statuses: Sequence[EntrustmentStatus] | None
    ) -> list[Entrustment]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if court_ids is not None:
            where.append(f"(from_court_id IN ({_marks(court_ids)}) OR to_court_id IN ({_marks(court_ids)}))")
            params.extend([*court_ids, *court_ids])
        if statuses is not None:
            where.append(f"status IN ({_marks(statuses)})")
            params.extend(s.value for s in statuses)
        rows = await self._q(f"SELECT * FROM entrustments WHERE {' AND '.join(where)} ORDER BY created_ms DESC, id",
                             params)  # fmt: skip
        return [entrustment_from_row(r) for r in rows]

    async def move_entrustment(
        self, entrustment_id: str, status: EntrustmentStatus, *, allowed: Sequence[EntrustmentStatus], at_ms: int
    ) -> Entrustment | None:
        stamps = stamps_sql(status, 0)
        rows = await self._q(
            f"UPDATE entrustments SET status = ?, {stamps} WHERE id = ? AND status IN ({_marks(allowed)}) RETURNING *",
            (status.value, *([at_ms] * stamps.count("?")), entrustment_id, *(s.value for s in allowed)),
        )
        if not rows:
            await self.get_entrustment(entrustment_id)
            return None
        return entrustment_from_row(rows[0])

    async def set_entrustment_units(
        self, entrustment_id: str, unit_ids: Sequence[UnitId], *, allowed: Sequence[EntrustmentStatus]
    ) -> Entrustment | None:
        rows = await self._q(
            f"UPDATE entrustments SET unit_ids = ? WHERE id = ? AND status IN ({_marks(allowed)}) RETURNING *",
            (json.dumps(list(unit_ids)), entrustment_id, *(s.value for s in allowed)),
        )
        if not rows:
            await self.get_entrustment(entrustment_id)
            return None
        return entrustment_from_row(rows[0])

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
        rows = await self._q(
            "INSERT INTO entrustment_events (entrustment_id, at_ms, kind, court_id, user_id, text, ref)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (entrustment_id, at_ms, kind, court_id, user_id, text, json.dumps(ref, ensure_ascii=False)),
        )
        return entrustment_event_from_row(rows[0])

    async def entrustment_events(self, entrustment_id: str) -> list[EntrustmentEvent]:
        rows = await self._q("SELECT * FROM entrustment_events WHERE entrustment_id = ? ORDER BY at_ms, id",
                             (entrustment_id,))  # fmt: skip
        return [entrustment_event_from_row(r) for r in rows]
