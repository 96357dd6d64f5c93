"""Alarms (``alarms.port``), written once for both databases: the partial unique index keeps one live
alarm per condition."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alarms.models import Alarm, AlarmAction, AlarmKind, AlarmState, allowed_from, next_state
from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.database import Database, Row

LIVE = ["open", "acknowledged"]


def alarm_from_row(r: Row) -> Alarm:
    """One row of ``alarms`` as an Alarm."""
    return Alarm(
        r["id"], AlarmKind(r["kind"]), r["subject"], CourtId(r["court_id"]),
        None if r["unit_id"] is None else UnitId(r["unit_id"]), json.loads(r["details"]), r["raised_ms"],
        AlarmState(r["state"]), bool(r["active"]), r["cleared_ms"], r["repeats"],
        None if r["acknowledged_by"] is None else UserId(r["acknowledged_by"]), r["acknowledged_ms"],
        None if r["closed_by"] is None else UserId(r["closed_by"]), r["closed_ms"], r["note"],
    )  # fmt: skip


class AlarmsSql:
    if TYPE_CHECKING:
        database: Database

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
        async with self.database.transaction() as conn:
            row = await conn.fetchrow(
                "INSERT INTO alarms (kind, subject, court_id, unit_id, details, raised_ms, state, active)"
                " VALUES ($1, $2, $3, $4, $5, $6, 'open', TRUE)"
                " ON CONFLICT (kind, subject) WHERE state IN ('open', 'acknowledged') DO NOTHING RETURNING *",
                kind.value, subject, court_id, unit_id, json.dumps(details, ensure_ascii=False), at_ms,
            )  # fmt: skip
            if row is not None:
                return alarm_from_row(row), True
            row = await conn.fetchrow(
                "UPDATE alarms SET active = TRUE, cleared_ms = NULL, repeats = repeats + 1"
                " WHERE kind = $1 AND subject = $2 AND state = ANY($3) AND NOT active RETURNING *",
                kind.value, subject, LIVE,
            )  # fmt: skip
            if row is not None:
                return alarm_from_row(row), True
            row = await conn.fetchrow(
                "SELECT * FROM alarms WHERE kind = $1 AND subject = $2 AND state = ANY($3)", kind.value, subject, LIVE
            )
            assert row is not None  # the conflicting live row, which this transaction saw
            return alarm_from_row(row), False

    async def clear_alarm(self, kind: AlarmKind, subject: str, *, at_ms: int, resolve: bool) -> Alarm | None:
        row = await self.database.fetchrow(
            "UPDATE alarms SET active = FALSE, cleared_ms = $3,"
            " state = CASE WHEN $4 THEN 'resolved' ELSE state END,"
            " closed_ms = CASE WHEN $4 THEN $3 ELSE closed_ms END"
            " WHERE kind = $1 AND subject = $2 AND state = ANY($5) AND active RETURNING *",
            kind.value, subject, at_ms, resolve, LIVE,
        )  # fmt: skip
        return None if row is None else alarm_from_row(row)

    async def act_on_alarm(
        self, alarm_id: int, action: AlarmAction, *, user_id: UserId, at_ms: int, note: str | None
    ) -> Alarm:
        target = next_state(allowed_from(action)[0], action)
        acknowledging = action is AlarmAction.ACKNOWLEDGE
        row = await self.database.fetchrow(
            "UPDATE alarms SET state = $2, note = COALESCE($5, note),"
            " acknowledged_by = CASE WHEN $6 THEN $3 ELSE acknowledged_by END,"
            " acknowledged_ms = CASE WHEN $6 THEN $4 ELSE acknowledged_ms END,"
            " closed_by = CASE WHEN $6 THEN closed_by ELSE $3 END,"
            " closed_ms = CASE WHEN $6 THEN closed_ms ELSE $4 END"
            " WHERE id = $1 AND state = ANY($7) RETURNING *",
            alarm_id, target.value, user_id, at_ms, note, acknowledging, [s.value for s in allowed_from(action)],
        )  # fmt: skip
        if row is None:
            next_state((await self.get_alarm(alarm_id)).state, action)  # NotFound, or Conflict saying why
        assert row is not None
        return alarm_from_row(row)

    async def get_alarm(self, alarm_id: int) -> Alarm:
        row = await self.database.fetchrow("SELECT * FROM alarms WHERE id = $1", alarm_id)
        if row is None:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return alarm_from_row(row)

    async def list_alarms(
        self, *, court_ids: Sequence[CourtId] | None, live_only: bool, limit: int = 500
    ) -> list[Alarm]:
        rows = await self.database.fetch(
            "SELECT * FROM alarms WHERE ($1::text[] IS NULL OR court_id = ANY($1))"
            " AND (NOT $2 OR state = ANY($3)) ORDER BY raised_ms DESC, id DESC LIMIT $4",
            None if court_ids is None else list(court_ids), live_only, LIVE, limit,
        )  # fmt: skip
        return [alarm_from_row(r) for r in rows]
