"""Tasks sent to field units (派警任务): what a task is and how it may move. Pure.

The command centre creates a task for a unit; it is queued until the unit's live channel is open, then
delivered (and delivered again on every reconnect until the unit acknowledges it, so a task sent to an
offline unit is never lost); the unit reports acknowledged → in progress → done or failed; an operator may
cancel it until it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.errors import Conflict
from core.ids import CourtId, UnitId, UserId


class TaskKind(StrEnum):
    GO_TO = "go_to"  # 前往地点
    SEARCH = "search"  # 搜查
    SEIZE = "seize"  # 查封扣押
    START_RECORDING = "start_recording"  # 开始录像
    STOP_RECORDING = "stop_recording"  # 停止录像
    CALL_BACK = "call_back"  # 回电指挥中心


class TaskStatus(StrEnum):
    QUEUED = "queued"  # 待下发: the unit's channel was not open
    DELIVERED = "delivered"  # 已下发: sent over the unit's channel, not yet acknowledged
    ACKNOWLEDGED = "acknowledged"  # 已接收
    IN_PROGRESS = "in_progress"  # 执行中
    DONE = "done"  # 已完成
    FAILED = "failed"  # 未完成 (with why)
    CANCELLED = "cancelled"  # 已撤销


UNDELIVERED = (TaskStatus.QUEUED, TaskStatus.DELIVERED)  # sent again whenever the unit (re)connects
LIVE = (*UNDELIVERED, TaskStatus.ACKNOWLEDGED, TaskStatus.IN_PROGRESS)

# What the unit may report, from which states (a report may skip steps, never go back).
UNIT_MOVES: dict[TaskStatus, tuple[TaskStatus, ...]] = {
    TaskStatus.ACKNOWLEDGED: UNDELIVERED,
    TaskStatus.IN_PROGRESS: (*UNDELIVERED, TaskStatus.ACKNOWLEDGED),
    TaskStatus.DONE: (*UNDELIVERED, TaskStatus.ACKNOWLEDGED, TaskStatus.IN_PROGRESS),
    TaskStatus.FAILED: (*UNDELIVERED, TaskStatus.ACKNOWLEDGED, TaskStatus.IN_PROGRESS),
}


def check_move(current: TaskStatus, target: TaskStatus, allowed: tuple[TaskStatus, ...]) -> None:
    """Conflict (saying why) unless ``current`` is one of ``allowed``."""
    if current not in allowed:
        raise Conflict(f"task is {current.value}; it cannot become {target.value}")


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    unit_id: UnitId
    court_id: CourtId
    kind: TaskKind
    title: str
    details: dict[str, Any]  # e.g. {"lat":…, "lon":…, "address": "…", "note": "…"}
    created_by: UserId
    created_ms: int
    due_ms: int | None
    status: TaskStatus
    updated_ms: int
    note: str | None  # the unit's last report, or the reason for a cancel
