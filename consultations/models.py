"""Consultation rooms (执行会商): who may confer on which matter, who is in the room, who is muted. Pure records.

A room is opened by a supervisor or operator (its host) for an operation or a case; the courts involved are
the matter's court and, for an operation, every court whose units take part (异地调度). Only invited people
join, and only people authorised for one of the courts involved may be invited (decided at the edge from the
court hierarchy). The host mutes and unmutes; a closed room takes no one in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from core.ids import CaseId, CourtId, UnitId, UserId


class RoomStatus(StrEnum):
    OPEN = "open"  # 会商中
    CLOSED = "closed"  # 已结束


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    title: str
    court_id: CourtId  # the matter's court: the operation's or the case's
    court_ids: tuple[CourtId, ...]  # every court involved, court_id first
    operation_id: str | None
    case_id: CaseId | None
    unit_id: UnitId | None  # the unit on the scene whose live video is pinned in the room
    host_id: UserId
    status: RoomStatus
    created_ms: int
    closed_ms: int | None


@dataclass(frozen=True, slots=True)
class Member:
    """One invited person; ``present`` while joined (a person may join and leave many times)."""

    room_id: str
    user_id: UserId
    invited_by: UserId
    invited_ms: int
    present: bool
    muted: bool
    joined_ms: int | None  # the last join
    left_ms: int | None  # the last leave


def authorised_for(visible: Sequence[CourtId] | None, room: Room) -> bool:
    """May someone who sees ``visible`` courts (None: all) take part: they see one of the courts involved."""
    return visible is None or any(court in visible for court in room.court_ids)
