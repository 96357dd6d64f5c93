"""Records the store hands out: plain frozen dataclasses, no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from core.ids import CourtId, UnitId, UserId


class Role(StrEnum):
    """Roles of people; devices authenticate separately and are never a ``Role``."""

    OPERATOR = "operator"  # command-centre operator on a console or wall display
    JUDGE = "judge"  # enforcement judge (执行法官): asset queries on own cases
    SUPERVISOR = "supervisor"  # sees own court and courts below (上下一体); approves follow-ups
    ADMIN = "admin"  # manages users, devices and courts


class CourtLevel(StrEnum):
    HIGH = "high"  # 高级人民法院
    INTERMEDIATE = "intermediate"  # 中级人民法院
    BASIC = "basic"  # 基层人民法院


class UnitKind(StrEnum):
    BODY_CAMERA = "body_camera"  # 执法记录仪 / 单兵
    HANDHELD = "handheld"
    VEHICLE = "vehicle"


@dataclass(frozen=True, slots=True)
class Court:
    id: CourtId
    name: str
    level: CourtLevel
    parent_id: CourtId | None


@dataclass(frozen=True, slots=True)
class User:
    id: UserId
    username: str
    display_name: str
    role: Role
    court_id: CourtId
    password_hash: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    """An interactive login; only the SHA-256 of the bearer token is stored."""

    token_hash: str
    user_id: UserId
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Unit:
    """A field unit (执行单兵) and the device credential it authenticates with."""

    id: UnitId
    name: str
    kind: UnitKind
    court_id: CourtId
    revoked_at: datetime | None
    created_at: datetime
    #: Silence after which this unit is offline; None: the configured default.
    offline_after_seconds: float | None = None


class Position(msgspec.Struct, frozen=True, gc=False):
    """One GPS fix of a unit, as validated from its telemetry. Times are epoch milliseconds.

    A msgspec Struct that the garbage collector does not track (``gc=False``: it holds only numbers and a
    string, so it can never be part of a cycle). Tens of thousands are created a second and each unit's
    newest lives until the next fix, long enough to be promoted; as a dataclass each was one more object
    every collector pass walked. Constructed, compared and hashed as the frozen dataclass it replaces."""

    unit_id: UnitId
    seq: int
    fix_time_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    speed_mps: float | None
    heading_deg: float | None
    altitude_m: float | None
    battery_pct: float | None
    sos: bool
    received_ms: int

    def shown(self) -> PositionView:
        """The position as screens see it (docs/protocols.md, UnitView.position)."""
        return PositionView(self.seq, self.fix_time_ms, self.lat, self.lon, self.accuracy_m, self.speed_mps,
                            self.heading_deg, self.altitude_m, self.battery_pct)  # fmt: skip

    def view(self) -> dict[str, Any]:
        """``shown`` as a dict (an API response)."""
        view: dict[str, Any] = msgspec.to_builtins(self.shown())
        return view


class PositionView(msgspec.Struct, frozen=True, gc=False):
    """What screens see of a Position: all but the unit (the view is the unit's), SOS (the unit's status
    shows it) and when the server received it. A Struct, so a unit's view is serialised by msgspec at once."""

    seq: int
    fix_time_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    speed_mps: float | None
    heading_deg: float | None
    altitude_m: float | None
    battery_pct: float | None


class Duty(StrEnum):
    AVAILABLE = "available"  # 待命
    EN_ROUTE = "en_route"  # 出警途中
    ON_SITE = "on_site"  # 到达现场


class Status(StrEnum):
    """What the wall display shows for a unit (see ``field_units.status``)."""

    AVAILABLE = "available"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    SOS = "sos"
    OFFLINE = "offline"


class UnitState(msgspec.Struct, frozen=True, gc=False):
    """The facts a unit's status is made of; transitions live in ``field_units.status``.

    Untracked by the garbage collector, as ``Position`` (scalars only: never part of a cycle). Every message
    replaces its unit's state, and the old one has usually been promoted by then: as a tracked dataclass each
    replacement left one more object in the young generation (the collector's count is net, so the death of
    the old state did not start a pass), and a pass came only once ~100,000 of them had piled up: 60 ms of
    walking in one go, in process; over 100 ms in the server at 10,000 units."""

    duty: Duty = Duty.AVAILABLE
    sos: bool = False
    online: bool = False
    last_seen_ms: int | None = None  # server time of the last message, not the fix time

    @property
    def status(self) -> Status:
        if self.sos:
            return Status.SOS
        if not self.online:
            return Status.OFFLINE
        return _DUTY_STATUS[self.duty]


_DUTY_STATUS = {Duty.AVAILABLE: Status.AVAILABLE, Duty.EN_ROUTE: Status.EN_ROUTE, Duty.ON_SITE: Status.ON_SITE}
