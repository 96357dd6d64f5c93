"""What an alarm is and how it may move (告警处置): pure, shared by the alarm desk, the API and the storage
adapters (which apply ``next_state`` as a compare-and-set).

An alarm is about a condition (a unit calls for help, goes silent, runs low on battery, breaks a geofence,
lets a task run overdue). At most one alarm per (kind, subject) is live at a time: the same condition
raised again while its alarm is live only marks it active again. A person acknowledges it (已确认) and then
resolves it (已处置) or marks it false (误报), with who and when; a condition that clears by itself (the
unit is back online, the battery is charged) resolves its alarm automatically where that is safe to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.errors import Conflict
from core.ids import CourtId, UnitId, UserId


class AlarmKind(StrEnum):
    SOS = "sos"  # 一键求救
    OFFLINE = "offline"  # 离线
    LOW_BATTERY = "low_battery"  # 电量低
    GEOFENCE = "geofence"  # 电子围栏
    TASK_OVERDUE = "task_overdue"  # 任务超时
    # An entrustment between courts still live past its deadline: one alarm for each of its two courts.
    ENTRUSTMENT_OVERDUE = "entrustment_overdue"  # 执行委托超期
    # The abuse watch on asset queries (query_control/abuse.py): about a judge, for the court's supervisors.
    QUERY_BURST = "query_burst"  # 查控频次异常
    QUERY_NIGHT = "query_night"  # 夜间查控
    QUERY_SAME_PERSON = "query_same_person"  # 跨案查询同一人
    # The recordings' verification (media/verification.py): a segment altered or missing against the audit chain.
    EVIDENCE_MISMATCH = "evidence_mismatch"  # 录像校验异常


# Kinds whose alarm closes by itself once the condition clears (back online, charged, the task ended);
# an SOS or a geofence breach always needs a person.
SELF_RESOLVING = frozenset(
    {AlarmKind.OFFLINE, AlarmKind.LOW_BATTERY, AlarmKind.TASK_OVERDUE, AlarmKind.ENTRUSTMENT_OVERDUE}
)


class AlarmState(StrEnum):
    OPEN = "open"  # 未处理
    ACKNOWLEDGED = "acknowledged"  # 已确认
    RESOLVED = "resolved"  # 已处置
    FALSE_ALARM = "false_alarm"  # 误报


LIVE_STATES = (AlarmState.OPEN, AlarmState.ACKNOWLEDGED)


class AlarmAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    FALSE_ALARM = "false_alarm"


_MOVES = {
    AlarmAction.ACKNOWLEDGE: ((AlarmState.OPEN,), AlarmState.ACKNOWLEDGED),
    AlarmAction.RESOLVE: (LIVE_STATES, AlarmState.RESOLVED),
    AlarmAction.FALSE_ALARM: (LIVE_STATES, AlarmState.FALSE_ALARM),
}


def next_state(current: AlarmState, action: AlarmAction) -> AlarmState:
    """The state ``action`` moves an alarm to; Conflict (with why) when it may not."""
    allowed, target = _MOVES[action]
    if current not in allowed:
        raise Conflict(f"cannot {action.value} an alarm that is {current.value}")
    return target


def allowed_from(action: AlarmAction) -> tuple[AlarmState, ...]:
    return _MOVES[action][0]


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    kind: AlarmKind
    subject: str  # what the condition is about: a unit id, "<unit>|<geofence>", a task id
    court_id: CourtId
    unit_id: UnitId | None
    details: dict[str, Any]
    raised_ms: int
    state: AlarmState
    active: bool  # the condition still holds
    cleared_ms: int | None
    repeats: int  # times the condition came back while the alarm was live
    acknowledged_by: UserId | None
    acknowledged_ms: int | None
    closed_by: UserId | None  # None with closed_ms set: closed by the system (the condition cleared)
    closed_ms: int | None
    note: str | None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES
