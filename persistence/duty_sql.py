"""Duty roster, notes and query statistics (``persistence.duty_port``), written once for both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.errors import NotFound
from core.ids import CourtId, UserId
from persistence.database import Database, Row
from persistence.duty_models import DutyNote, DutyPost, QueryOutcome, RosterEntry


def roster_from_row(r: Row) -> RosterEntry:
    return RosterEntry(CourtId(r["court_id"]), r["day"], DutyPost(r["post"]), UserId(r["user_id"]),
                       UserId(r["assigned_by"]), r["signed_in_ms"])  # fmt: skip


def note_from_row(r: Row) -> DutyNote:
    user_id = None if r["user_id"] is None else UserId(r["user_id"])  # None: the system's note
    return DutyNote(r["id"], CourtId(r["court_id"]), r["at_ms"], user_id, r["text"])


def outcome_from_row(r: Row) -> QueryOutcome:
    return QueryOutcome(r["id"], CourtId(r["court_id"]), r["created_ms"], r["completed_ms"], int(r["timed_out"]))


class DutySql:
    if TYPE_CHECKING:
        database: Database

    async def set_duty_post(
        self, court_id: CourtId, day: str, post: DutyPost, user_id: UserId, *, assigned_by: UserId
    ) -> RosterEntry:
        try:
            row = await self.database.fetchrow(
                "INSERT INTO duty_roster (court_id, day, post, user_id, assigned_by) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (court_id, day, post) DO UPDATE SET user_id = excluded.user_id,"
                " assigned_by = excluded.assigned_by, signed_in_ms = CASE WHEN duty_roster.user_id ="
                " excluded.user_id THEN duty_roster.signed_in_ms END RETURNING *",
                court_id, day, post.value, user_id, assigned_by,
            )  # fmt: skip
        except NotFound:
            raise NotFound(f"no such court or user: court {court_id}, user {user_id} or {assigned_by}") from None
        assert row is not None
        return roster_from_row(row)

    async def duty_roster(self, court_ids: Sequence[CourtId] | None, day: str) -> list[RosterEntry]:
        rows = await self.database.fetch(
            "SELECT * FROM duty_roster WHERE day = $1 AND ($2::text[] IS NULL OR court_id = ANY($2))"
            " ORDER BY court_id, post",
            day, None if court_ids is None else list(court_ids),
        )  # fmt: skip
        return [roster_from_row(r) for r in rows]

    async def sign_in_duty(self, user_id: UserId, day: str, at_ms: int) -> list[RosterEntry]:
        rows = await self.database.fetch(
            "UPDATE duty_roster SET signed_in_ms = COALESCE(signed_in_ms, $3) WHERE user_id = $1 AND day = $2"
            " RETURNING *",
            user_id, day, at_ms,
        )  # fmt: skip
        return [roster_from_row(r) for r in rows]

    async def add_duty_note(self, court_id: CourtId, user_id: UserId | None, text: str, at_ms: int) -> DutyNote:
        row = await self.database.fetchrow(
            "INSERT INTO duty_notes (court_id, at_ms, user_id, text) VALUES ($1, $2, $3, $4) RETURNING *",
            court_id, at_ms, user_id, text,
        )  # fmt: skip
        assert row is not None
        return note_from_row(row)

    async def duty_notes(self, court_ids: Sequence[CourtId] | None, since_ms: int, until_ms: int) -> list[DutyNote]:
        rows = await self.database.fetch(
            "SELECT * FROM duty_notes WHERE at_ms >= $1 AND at_ms < $2 AND ($3::text[] IS NULL OR court_id = ANY($3))"
            " ORDER BY at_ms, id",
            since_ms, until_ms, None if court_ids is None else list(court_ids),
        )  # fmt: skip
        return [note_from_row(r) for r in rows]

    async def query_outcomes(self, court_ids: Sequence[CourtId] | None, since_ms: int) -> list[QueryOutcome]:
        rows = await self.database.fetch(
            "SELECT q.id, c.court_id, q.created_ms, q.completed_ms,"
            " SUM(CASE WHEN j.status = 'timed_out' THEN 1 ELSE 0 END) AS timed_out"
            " FROM queries q JOIN cases c ON c.id = q.case_id JOIN query_jobs j ON j.query_id = q.id"
            " WHERE q.created_ms >= $1 AND ($2::text[] IS NULL OR c.court_id = ANY($2))"
            " GROUP BY q.id, c.court_id, q.created_ms, q.completed_ms ORDER BY q.created_ms",
            since_ms, None if court_ids is None else list(court_ids),
        )  # fmt: skip
        return [outcome_from_row(r) for r in rows]
