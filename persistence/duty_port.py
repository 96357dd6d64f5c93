"""The storage duty and the console's statistics need; part of the ``Store`` port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.ids import CourtId, UserId
from persistence.duty_models import DutyNote, DutyPost, QueryOutcome, RosterEntry


class DutyStore(Protocol):
    async def set_duty_post(
        self, court_id: CourtId, day: str, post: DutyPost, user_id: UserId, *, assigned_by: UserId
    ) -> RosterEntry:
        """Assign (or reassign: the sign-in is cleared) the post for the day."""

    async def duty_roster(self, court_ids: Sequence[CourtId] | None, day: str) -> list[RosterEntry]: ...

    async def sign_in_duty(self, user_id: UserId, day: str, at_ms: int) -> list[RosterEntry]:
        """Sign the user in on every post they hold that day (the first sign-in time is kept); the posts."""

    async def add_duty_note(self, court_id: CourtId, user_id: UserId | None, text: str, at_ms: int) -> DutyNote:
        """A note in the court's duty log; ``user_id`` None: the system's (a step no person took)."""

    async def duty_notes(self, court_ids: Sequence[CourtId] | None, since_ms: int, until_ms: int) -> list[DutyNote]:
        """Oldest first."""

    async def query_outcomes(self, court_ids: Sequence[CourtId] | None, since_ms: int) -> list[QueryOutcome]:
        """The asset queries created since then in those courts (None: all), with their timed-out jobs."""
