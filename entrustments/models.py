"""Entrustment (执行委托): court A asks court B's centre to act in B's area. Pure records and moves.

The asking court names a task, an address, a deadline and why; the receiving centre accepts (and assigns its
own units) or refuses with a reason; while accepted, the asking court follows the timeline and the assigned
units' positions, and nothing else of the receiving court; completion, refusal or withdrawal ends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.ids import CourtId, UnitId, UserId


class EntrustmentStatus(StrEnum):
    REQUESTED = "requested"  # 待受理
    ACCEPTED = "accepted"  # 执行中: the receiving centre took it on and may assign units
    REFUSED = "refused"  # 已退回
    COMPLETED = "completed"  # 已办结
    WITHDRAWN = "withdrawn"  # 已撤回 by the asking court


LIVE_ENTRUSTMENTS = (EntrustmentStatus.REQUESTED, EntrustmentStatus.ACCEPTED)
ENDED = (EntrustmentStatus.REFUSED, EntrustmentStatus.COMPLETED, EntrustmentStatus.WITHDRAWN)
#: A move to the key is allowed only from these statuses.
MOVES: dict[EntrustmentStatus, tuple[EntrustmentStatus, ...]] = {
    EntrustmentStatus.ACCEPTED: (EntrustmentStatus.REQUESTED,),
    EntrustmentStatus.REFUSED: (EntrustmentStatus.REQUESTED,),
    EntrustmentStatus.COMPLETED: (EntrustmentStatus.ACCEPTED,),
    EntrustmentStatus.WITHDRAWN: LIVE_ENTRUSTMENTS,
}


class Side(StrEnum):
    """Which end of an entrustment a court is on; a court may be neither (then it learns nothing of it)."""

    ASKING = "asking"  # 委托法院
    RECEIVING = "receiving"  # 受托法院


#: Who may make each move: the receiving centre decides and reports, the asking court may withdraw.
MOVER: dict[EntrustmentStatus, Side] = {
    EntrustmentStatus.ACCEPTED: Side.RECEIVING,
    EntrustmentStatus.REFUSED: Side.RECEIVING,
    EntrustmentStatus.COMPLETED: Side.RECEIVING,
    EntrustmentStatus.WITHDRAWN: Side.ASKING,
}


@dataclass(frozen=True, slots=True)
class Entrustment:
    id: str
    from_court_id: CourtId  # the asking court (委托法院)
    to_court_id: CourtId  # the receiving court (受托法院), in whose area the task is
    task: str
    address: str
    lat: float | None
    lon: float | None
    deadline_ms: int
    reason: str
    status: EntrustmentStatus
    unit_ids: tuple[UnitId, ...]  # the receiving court's units assigned to it
    created_by: UserId
    created_ms: int
    decided_ms: int | None
    ended_ms: int | None
    #: When the overdue sweep found it live past its deadline (its alarm is raised once, at that moment).
    overdue_ms: int | None = None

    def court_of(self, side: Side) -> CourtId:
        return self.from_court_id if side is Side.ASKING else self.to_court_id

    @property
    def running(self) -> bool:
        """While the asking court may follow the assigned units' positions."""
        return self.status is EntrustmentStatus.ACCEPTED


@dataclass(frozen=True, slots=True)
class EntrustmentEvent:
    id: int
    entrustment_id: str
    at_ms: int
    kind: str  # requested, accepted, refused, units, report, completed, withdrawn, overdue
    court_id: CourtId  # the court whose staff made the step
    user_id: UserId | None
    text: str
    ref: dict[str, Any]  # e.g. {"unit_ids": [...]}
