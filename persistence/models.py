"""Records the store hands out: plain frozen dataclasses, no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

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
