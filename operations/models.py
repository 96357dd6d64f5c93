"""Enforcement operations (执行行动): a search, seizure, eviction or detention run from the centre. Pure records.

An operation has an overall commander in the centre and an on-site commander, assigned units, a target
(location, address, and a radius that is its geofence), and a timeline of what happened, including the
asset queries and media recordings linked to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.ids import CaseId, CourtId, UnitId, UserId


class OperationKind(StrEnum):
    SEARCH = "search"  # 搜查
    SEIZURE = "seizure"  # 查封扣押
    EVICTION = "eviction"  # 强制迁出
    DETENTION = "detention"  # 拘传拘留


class OperationStatus(StrEnum):
    PLANNED = "planned"  # 准备中
    UNDER_WAY = "under_way"  # 进行中
    CONCLUDED = "concluded"  # 已结束
    CANCELLED = "cancelled"  # 已取消


LIVE_OPERATIONS = (OperationStatus.PLANNED, OperationStatus.UNDER_WAY)
MOVES: dict[OperationStatus, tuple[OperationStatus, ...]] = {
    OperationStatus.UNDER_WAY: (OperationStatus.PLANNED,),
    OperationStatus.CONCLUDED: (OperationStatus.UNDER_WAY,),
    OperationStatus.CANCELLED: LIVE_OPERATIONS,
}


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    court_id: CourtId
    kind: OperationKind
    title: str
    case_id: CaseId | None
    commander_id: UserId  # 总指挥, in the centre
    onsite_commander: str  # 现场指挥: the officer leading on site (name, and unit in parentheses if any)
    target: dict[str, Any]  # {"lat", "lon", "address", "radius_m"}: the radius is the operation's geofence
    unit_ids: tuple[UnitId, ...]
    status: OperationStatus
    created_by: UserId
    created_ms: int
    started_ms: int | None
    ended_ms: int | None


@dataclass(frozen=True, slots=True)
class OperationEvent:
    id: int
    operation_id: str
    at_ms: int
    kind: str  # created, units, started, concluded, cancelled, note, query, recording
    user_id: UserId | None
    text: str
    ref: dict[str, Any]  # e.g. {"query_id": ...}, {"recording": ...}, {"unit_ids": [...]}
