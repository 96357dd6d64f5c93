"""Who is calling: bearer tokens for people, device secrets for field units, system-client secrets for the
case-management system, and role checks.

Both kinds of credential arrive as ``Authorization: Bearer …`` (browsers' WebSockets may pass
``?token=`` instead, as they cannot set headers). The prefix tells a session token from a device secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from aiohttp import web

from command_center.credentials import DEVICE_PREFIX, SESSION_PREFIX, SYSTEM_PREFIX, lookup_hash
from command_center.keys import STORE
from core.errors import Forbidden, TokenExpired, Unauthenticated
from core.ids import CourtId
from persistence.models import Role, Session, Unit, User
from persistence.query_models import SystemClient


class Access(StrEnum):
    """Who a route admits: the four roles of people, field-unit devices, and the case-management system."""

    OPERATOR = Role.OPERATOR.value
    JUDGE = Role.JUDGE.value
    SUPERVISOR = Role.SUPERVISOR.value
    ADMIN = Role.ADMIN.value
    DEVICE = "device"
    SYSTEM = "system"  # the court's case-management system (立案): the source of cases, nothing else


PEOPLE = frozenset({Access.OPERATOR, Access.JUDGE, Access.SUPERVISOR, Access.ADMIN})


@dataclass(frozen=True, slots=True)
class UserCaller:
    user: User
    session: Session

    @property
    def access(self) -> Access:
        return Access(self.user.role.value)

    @property
    def court_id(self) -> CourtId:
        return self.user.court_id


@dataclass(frozen=True, slots=True)
class DeviceCaller:
    unit: Unit

    @property
    def access(self) -> Access:
        return Access.DEVICE

    @property
    def court_id(self) -> CourtId:
        return self.unit.court_id


@dataclass(frozen=True, slots=True)
class SystemCaller:
    client: SystemClient

    @property
    def access(self) -> Access:
        return Access.SYSTEM

    @property
    def court_id(self) -> CourtId:
        return self.client.court_id


Caller = UserCaller | DeviceCaller | SystemCaller

_CALLER: web.RequestKey[Caller] = web.RequestKey("caller")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        return value.strip()
    return request.query.get("token")


async def authenticate(request: web.Request) -> Caller:
    """Resolve the caller or raise 401; the result is kept on the request."""
    token = bearer(request)
    if token is None:
        raise Unauthenticated("missing bearer token")
    store = request.app[STORE]
    if token.startswith(SESSION_PREFIX):
        found = await store.find_session(lookup_hash(token))
        if found is None:
            raise Unauthenticated("unknown token")
        session, user = found
        if session.revoked_at is not None:
            raise Unauthenticated("token was revoked")
        if session.expires_at <= datetime.now(UTC):
            raise TokenExpired("token expired; log in again")
        if user.disabled:
            raise Unauthenticated("account is disabled")
        caller: Caller = UserCaller(user, session)
    elif token.startswith(DEVICE_PREFIX):
        unit = await store.find_unit_by_secret(lookup_hash(token))
        if unit is None:
            raise Unauthenticated("unknown device credential")
        if unit.revoked_at is not None:
            raise Unauthenticated(f"device credential of unit {unit.id} was revoked")
        caller = DeviceCaller(unit)
    elif token.startswith(SYSTEM_PREFIX):
        client = await store.find_system_client_by_secret(lookup_hash(token))
        if client is None:
            raise Unauthenticated("unknown system-client credential")
        if client.revoked_ms is not None:
            raise Unauthenticated(f"system client {client.name!r} was revoked")
        caller = SystemCaller(client)
    else:
        raise Unauthenticated("malformed token")
    request[_CALLER] = caller
    return caller


def authorise(caller: Caller, allowed: frozenset[Access]) -> None:
    if caller.access not in allowed:
        wanted = ", ".join(sorted(allowed))
        raise Forbidden(f"role '{caller.access}' may not do this (allowed: {wanted})")


def current_caller(request: web.Request) -> Caller:
    caller: Caller = request[_CALLER]
    return caller


def current_user(request: web.Request) -> UserCaller:
    caller = current_caller(request)
    if not isinstance(caller, UserCaller):
        raise Forbidden("only people may do this")
    return caller


def current_device(request: web.Request) -> DeviceCaller:
    caller = current_caller(request)
    if not isinstance(caller, DeviceCaller):
        raise Forbidden("only field-unit devices may do this")
    return caller


def current_system(request: web.Request) -> SystemCaller:
    caller = current_caller(request)
    if not isinstance(caller, SystemCaller):
        raise Forbidden("only the case-management system may do this")
    return caller
