"""Alarms on SQLite (see ``alarm_port``): the same statements as PostgreSQL, one transaction lock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from alarms.models import Alarm, AlarmAction, AlarmKind, allowed_from, next_state
from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.postgres_alarms import alarm_from_row

LIVE = ("open", "acknowledged")


class SqliteAlarms:
    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def raise_alarm(
        self,
        kind: AlarmKind,
        subject: str,
        *,
        court_id: CourtId,
        unit_id: UnitId | None,
        details: dict[str, Any],
        at_ms: int,
    ) -> tuple[Alarm, bool]:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO alarms (kind, subject, court_id, unit_id, details, raised_ms, state, active)"
                " VALUES (?, ?, ?, ?, ?, ?, 'open', 1)"
                " ON CONFLICT (kind, subject) WHERE state IN ('open', 'acknowledged') DO NOTHING RETURNING *",
                (kind.value, subject, court_id, unit_id, json.dumps(details, ensure_ascii=False), at_ms),
            )
            row = await cursor.fetchone()
            await cursor.close()
            if row is not None:
                return alarm_from_row(row), True
            for sql, changed in (
                ("UPDATE alarms SET active = 1, cleared_ms = NULL, repeats = repeats + 1"
                 " WHERE kind = ? AND subject = ? AND state IN (?, ?) AND NOT active RETURNING *", True),
                ("SELECT * FROM alarms WHERE kind = ? AND subject = ? AND state IN (?, ?)", False),
            ):  # fmt: skip
                cursor = await db.execute(sql, (kind.value, subject, *LIVE))
                row = await cursor.fetchone()
                await cursor.close()
                if row is not None:
                    return alarm_from_row(row), changed
            raise AssertionError("an alarm conflicted with a live one that is not there")

    async def clear_alarm(self, kind: AlarmKind, subject: str, *, at_ms: int, resolve: bool) -> Alarm | None:
        rows = await self._q(
            "UPDATE alarms SET active = 0, cleared_ms = ?, state = CASE WHEN ? THEN 'resolved' ELSE state END,"
            " closed_ms = CASE WHEN ? THEN ? ELSE closed_ms END"
            " WHERE kind = ? AND subject = ? AND state IN (?, ?) AND active RETURNING *",
            (at_ms, resolve, resolve, at_ms, kind.value, subject, *LIVE),
        )
        return alarm_from_row(rows[0]) if rows else None

    async def act_on_alarm(
        self, alarm_id: int, action: AlarmAction, *, user_id: UserId, at_ms: int, note: str | None
    ) -> Alarm:
        allowed = [s.value for s in allowed_from(action)]
        target = next_state(allowed_from(action)[0], action)
        ack = action is AlarmAction.ACKNOWLEDGE
        rows = await self._q(
            "UPDATE alarms SET state = ?, note = COALESCE(?, note),"
            " acknowledged_by = CASE WHEN ? THEN ? ELSE acknowledged_by END,"
            " acknowledged_ms = CASE WHEN ? THEN ? ELSE acknowledged_ms END,"
            " closed_by = CASE WHEN ? THEN closed_by ELSE ? END,"
            " closed_ms = CASE WHEN ? THEN closed_ms ELSE ? END"
            f" WHERE id = ? AND state IN ({', '.join('?' * len(allowed))}) RETURNING *",
            (target.value, note, ack, user_id, ack, at_ms, ack, user_id, ack, at_ms, alarm_id, *allowed),
        )
        if not rows:
            next_state((await self.get_alarm(alarm_id)).state, action)  # NotFound, or Conflict saying why
        return alarm_from_row(rows[0])

    async def get_alarm(self, alarm_id: int) -> Alarm:
        rows = await self._q("SELECT * FROM alarms WHERE id = ?", (alarm_id,))
        if not rows:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return alarm_from_row(rows[0])

    async def list_alarms(
        self, *, court_ids: Sequence[CourtId] | None, live_only: bool, limit: int = 500
    ) -> list[Alarm]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if court_ids is not None:
            where.append(f"court_id IN ({', '.join('?' * len(court_ids)) or 'NULL'})")
            params.extend(court_ids)
        if live_only:
            where.append("state IN (?, ?)")
            params.extend(LIVE)
        rows = await self._q(
            f"SELECT * FROM alarms WHERE {' AND '.join(where)} ORDER BY raised_ms DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [alarm_from_row(r) for r in rows]
