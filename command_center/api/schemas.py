"""Request and response bodies of the HTTP API (pydantic: validation and the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from persistence.models import Court, CourtLevel, Role, Unit, UnitKind, User

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


MAX_BIGINT = 2**63 - 1  # what a database integer column holds (SQLite INTEGER, PostgreSQL BIGINT)
RowId = Annotated[int, Field(ge=1, le=MAX_BIGINT, description="a record's id")]
BigInt = Annotated[int, Field(ge=0, le=MAX_BIGINT)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(BaseModel):
    status: str = Field(description="ok, or degraded when a dependency is down")
    store: dict[str, Any]
    bus: dict[str, Any]


class LoginIn(Strict):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordChangeIn(Strict):
    old_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Unlocked(BaseModel):
    username: str
    cleared: int = Field(description="failed-login records cleared (per address and across addresses)")


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    court_id: str
    disabled: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            court_id=user.court_id,
            disabled=user.disabled,
        )


class LoginOut(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut


class MeOut(BaseModel):
    kind: str = Field(description="user or device")
    access: str
    court_id: str
    user: UserOut | None = None
    unit_id: str | None = None
    oversees_every_court: bool = Field(
        False, description="the caller sees every court (admins, the top court's supervisors): what the 运维 page needs"
    )


class CourtIn(Strict):
    id: Identifier
    name: Name
    level: CourtLevel
    parent_id: Identifier | None = None


class CourtOut(BaseModel):
    id: str
    name: str
    level: CourtLevel
    parent_id: str | None

    @classmethod
    def of(cls, court: Court) -> CourtOut:
        return cls(id=court.id, name=court.name, level=court.level, parent_id=court.parent_id)


class CourtList(BaseModel):
    courts: list[CourtOut]


class UserIn(Strict):
    username: Identifier
    display_name: Name
    role: Role
    court_id: Identifier
    password: Annotated[str, StringConstraints(min_length=10, max_length=256)]


class UserList(BaseModel):
    users: list[UserOut]


RtpTransport = Literal["udp", "tcp-passive"]


class UnitIn(Strict):
    id: Identifier
    name: Name
    kind: UnitKind
    court_id: Identifier
    offline_after_seconds: float | None = Field(
        None, gt=0, le=86_400, description="silence after which the unit is offline; null: the configured default"
    )
    gb_device_id: str | None = Field(
        None,
        pattern=r"^\d{20}$",
        description="a GB/T 28181 device's 20-digit id: the unit registers over SIP and gets a sip_password",
    )
    gb_rtp_transport: RtpTransport | None = Field(
        None, description="with gb_device_id: how the device sends RTP; null: the platform's gb28181.rtp_transport"
    )


class UnitOut(BaseModel):
    id: str
    name: str
    kind: UnitKind
    court_id: str
    revoked: bool
    offline_after_seconds: float | None

    @classmethod
    def of(cls, unit: Unit) -> UnitOut:
        return cls(
            id=unit.id,
            name=unit.name,
            kind=unit.kind,
            court_id=unit.court_id,
            revoked=unit.revoked_at is not None,
            offline_after_seconds=unit.offline_after_seconds,
        )


class UnitCreated(BaseModel):
    unit: UnitOut
    secret: str = Field(description="the device secret; shown once, store it on the device")
    sip_password: str | None = Field(
        None, description="GB/T 28181 units: the SIP password to configure on the device; shown once"
    )


class UnitList(BaseModel):
    units: list[UnitOut]


class Revoked(BaseModel):
    revoked: int


class GbChannelOut(BaseModel):
    channel_id: str
    name: str
    manufacturer: str
    model: str
    status: str
    parent_id: str
    updated_ms: int


class GbDeviceIn(Strict):
    """A change to a GB/T 28181 unit (``PATCH /api/units/{unit_id}/gb28181``)."""

    rtp_transport: RtpTransport | None = Field(
        description="how the device sends RTP from its next INVITE: udp, or tcp-passive (it connects to the "
        "platform, RFC 4571); null: the platform's gb28181.rtp_transport"
    )


class GbDeviceOut(BaseModel):
    """A GB/T 28181 unit's signalling state on this process and the channels its catalog listed."""

    unit_id: str
    device_id: str
    rtp_transport: RtpTransport = Field(description="how the device is asked to send RTP (its own or the default)")
    rtp_transport_own: bool = Field(description="the device has its own rtp_transport (false: the platform's)")
    registered: bool = Field(description="registered with this server process now")
    transport: str | None = Field(description="UDP or TCP while registered")
    address: str | None = Field(description="the device's address as seen by the server, while registered")
    expires_in_seconds: float | None
    channels: list[GbChannelOut]
