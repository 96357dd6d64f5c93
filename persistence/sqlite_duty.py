"""Duty and query statistics on SQLite (see ``duty_port``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.ids import CourtId, UserId
from persistence.duty_models import DutyNote, DutyPost, QueryOutcome, RosterEntry
from persistence.postgres_duty import note_from_row, outcome_from_row, roster_from_row


def _courts(column: str, court_ids: Sequence[CourtId] | None) -> tuple[str, list[Any]]:
    if court_ids is None:
        return "1 = 1", []
    return f"{column} IN ({', '.join('?' * len(court_ids)) or 'NULL'})", list(court_ids)


class SqliteDuty:
    if TYPE_CHECKING:

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def set_duty_post(
        self, court_id: CourtId, day: str, post: DutyPost, user_id: UserId, *, assigned_by: UserId
    ) -> RosterEntry:
        rows = await self._q(
            "INSERT INTO duty_roster (court_id, day, post, user_id, assigned_by) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (court_id, day, post) DO UPDATE SET user_id = excluded.user_id,"
            " assigned_by = excluded.assigned_by, signed_in_ms = CASE WHEN duty_roster.user_id ="
            " excluded.user_id THEN duty_roster.signed_in_ms END RETURNING *",
            (court_id, day, post.value, user_id, assigned_by),
        )
        return roster_from_row(rows[0])

    async def duty_roster(self, court_ids: Sequence[CourtId] | None, day: str) -> list[RosterEntry]:
        where, params = _courts("court_id", court_ids)
        rows = await self._q(f"SELECT * FROM duty_roster WHERE day = ? AND {where} ORDER BY court_id, post",
                             (day, *params))  # fmt: skip
        return [roster_from_row(r) for r in rows]

    async def sign_in_duty(self, user_id: UserId, day: str, at_ms: int) -> list[RosterEntry]:
        rows = await self._q(
            "UPDATE duty_roster SET signed_in_ms = COALESCE(signed_in_ms, ?) WHERE user_id = ? AND day = ? RETURNING *",
            (at_ms, user_id, day),
        )
        return [roster_from_row(r) for r in rows]

    async def add_duty_note(self, court_id: CourtId, user_id: UserId, text: str, at_ms: int) -> DutyNote:
        rows = await self._q(
            "INSERT INTO duty_notes (court_id, at_ms, user_id, text) VALUES (?, ?, ?, ?) RETURNING *",
            (court_id, at_ms, user_id, text),
        )
        return note_from_row(rows[0])

    async def duty_notes(self, court_ids: Sequence[CourtId] | None, since_ms: int, until_ms: int) -> list[DutyNote]:
        where, params = _courts("court_id", court_ids)
        rows = await self._q(
            f"SELECT * FROM duty_notes WHERE at_ms >= ? AND at_ms < ? AND {where} ORDER BY at_ms, id",
            (since_ms, until_ms, *params),
        )
        return [note_from_row(r) for r in rows]

    async def query_outcomes(self, court_ids: Sequence[CourtId] | None, since_ms: int) -> list[QueryOutcome]:
        where, params = _courts("c.court_id", court_ids)
        rows = await self._q(
            "SELECT q.id, c.court_id, q.created_ms, q.completed_ms,"
            " SUM(CASE WHEN j.status = 'timed_out' THEN 1 ELSE 0 END) AS timed_out"
            " FROM queries q JOIN cases c ON c.id = q.case_id JOIN query_jobs j ON j.query_id = q.id"
            f" WHERE q.created_ms >= ? AND {where}"
            " GROUP BY q.id, c.court_id, q.created_ms, q.completed_ms ORDER BY q.created_ms",
            (since_ms, *params),
        )
        return [outcome_from_row(r) for r in rows]
