"""Duty in the command centre (执行值守): who holds each post on a day, whether they signed in, and the notes
they keep in the duty log. Pure records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.ids import CourtId, UserId


class DutyPost(StrEnum):
    OFFICER = "officer"  # 值班干警: watches, dispatches, handles alarms
    TECHNICIAN = "technician"  # 值班技术员: keeps the systems, links and devices running


@dataclass(frozen=True, slots=True)
class RosterEntry:
    court_id: CourtId
    day: str  # YYYY-MM-DD, the court's local day (China Standard Time)
    post: DutyPost
    user_id: UserId
    assigned_by: UserId
    signed_in_ms: int | None


@dataclass(frozen=True, slots=True)
class DutyNote:
    id: int
    court_id: CourtId
    at_ms: int
    user_id: UserId | None  # None: the system's note (e.g. an entrustment found overdue), shown as 系统
    text: str


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """One asset query's feedback, for the console's statistics."""

    query_id: str
    court_id: CourtId
    created_ms: int
    completed_ms: int | None
    timed_out_jobs: int

    @property
    def on_time(self) -> bool:
        """Complete feedback by the deadline: complete, and no agency timed out."""
        return self.completed_ms is not None and self.timed_out_jobs == 0
