"""Who is calling: bearer tokens for people, device secrets for field units, system-client secrets for the
case-management system, and role checks.

Both kinds of credential arrive as ``Authorization: Bearer …``; the prefix tells a session token from a
device secret. No credential is accepted in a URL (URLs end up in logs, proxies and browser history), with
one exception: a WebSocket handshake, which a browser cannot give headers, may carry ``?ticket=``, a
single-use ticket that expires in seconds (``command_center.tickets``, ``POST /api/auth/ticket``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from aiohttp import web

from command_center.credentials import DEVICE_PREFIX, SESSION_PREFIX, SYSTEM_PREFIX, lookup_hash
from command_center.keys import SETTINGS, STORE, TICKETS
from core.errors import Forbidden, TokenExpired, Unauthenticated
from core.ids import CourtId
from persistence.models import Role, Session, Unit, User
from persistence.port import Store
from persistence.query_models import SystemClient


class Access(StrEnum):
    """Who a route admits: the four roles of people, field-unit devices, and the case-management system."""

    OPERATOR = Role.OPERATOR.value
    JUDGE = Role.JUDGE.value
    SUPERVISOR = Role.SUPERVISOR.value
    ADMIN = Role.ADMIN.value
    DEVICE = "device"
    SYSTEM = "system"  # the court's case-management system (立案): the source of cases, nothing else
    SCRAPER = "scraper"  # Prometheus with ``observability.metrics_token``: /metrics, nothing else


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


@dataclass(frozen=True, slots=True)
class ScraperCaller:
    """Prometheus, holding the configured metrics token: it reads /metrics and nothing else."""

    @property
    def access(self) -> Access:
        return Access.SCRAPER

    @property
    def court_id(self) -> CourtId:
        raise Forbidden("the metrics scraper belongs to no court")


Caller = UserCaller | DeviceCaller | SystemCaller | ScraperCaller

_CALLER: web.RequestKey[Caller] = web.RequestKey("caller")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        return value.strip()
    return None


#: Kinds of credential a ticket stands for: ``s:<session token hash>`` or ``d:<device secret hash>``.
TICKET_SESSION, TICKET_DEVICE = "s", "d"


def ticket_credential(request: web.Request, caller: Caller) -> str:
    """What a ticket issued to this (header-authenticated) caller stands for: a lookup hash, never a token."""
    token = bearer(request)
    if token is None:
        raise Unauthenticated("a ticket is issued only against 'Authorization: Bearer <token>'")
    kind = TICKET_SESSION if isinstance(caller, UserCaller) else TICKET_DEVICE
    return f"{kind}:{lookup_hash(token)}"


#: The WebSocket routes, the only ones a ticket opens. The Upgrade header alone proves nothing: any client
#: can send it on a plain GET (``/api/cases?ticket=…`` with ``Upgrade: websocket`` would answer as HTTP).
WEBSOCKET_PATHS = frozenset({"/api/screen/ws", "/api/telemetry/ws"})


def _websocket_handshake(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.path in WEBSOCKET_PATHS
        and request.headers.get("Upgrade", "").lower() == "websocket"
    )


async def authenticate(request: web.Request) -> Caller:
    """Resolve the caller or raise 401; the result is kept on the request."""
    if "token" in request.query:
        raise Unauthenticated(
            "a credential in the URL (?token=) is not accepted: send 'Authorization: Bearer <token>'; "
            "to open a WebSocket, get a ticket from POST /api/auth/ticket and pass ?ticket="
        )
    token = bearer(request)
    store = request.app[STORE]
    if token is None:
        ticket = request.query.get("ticket")
        if ticket is None:
            raise Unauthenticated("missing bearer token")
        if not _websocket_handshake(request):
            raise Unauthenticated("a ticket only opens a WebSocket; send 'Authorization: Bearer <token>'")
        credential = await request.app[TICKETS].redeem(ticket)
        if credential is None:
            raise Unauthenticated("unknown, used or expired ticket; get a new one from POST /api/auth/ticket")
        kind, _, digest = credential.partition(":")
        if kind == TICKET_SESSION:
            caller = await _resolve(store, session=digest)
        else:
            caller = await _resolve(store, device=digest)
    elif token.startswith(SESSION_PREFIX):
        caller = await _resolve(store, session=lookup_hash(token))
    elif token.startswith(DEVICE_PREFIX):
        caller = await _resolve(store, device=lookup_hash(token))
    elif token.startswith(SYSTEM_PREFIX):
        client = await store.find_system_client_by_secret(lookup_hash(token))
        if client is None:
            raise Unauthenticated("unknown system-client credential")
        if client.revoked_ms is not None:
            raise Unauthenticated(f"system client {client.name!r} was revoked")
        caller = SystemCaller(client)
    elif _is_metrics_token(request, token):
        caller = ScraperCaller()
    else:
        raise Unauthenticated("malformed token")
    request[_CALLER] = caller
    return caller


def _is_metrics_token(request: web.Request, token: str) -> bool:
    """The configured scrape token, compared in constant time (its length is no secret: at least 32)."""
    expected = request.app[SETTINGS].observability.metrics_token.get_secret_value()
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


async def _resolve(store: Store, *, session: str | None = None, device: str | None = None) -> Caller:
    """The caller holding a session token or device secret, given its lookup hash; 401 if it no longer holds."""
    if session is not None:
        found = await store.find_session(session)
        if found is None:
            raise Unauthenticated("unknown token")
        record, user = found
        if record.revoked_at is not None:
            raise Unauthenticated("token was revoked")
        if record.expires_at <= datetime.now(UTC):
            raise TokenExpired("token expired; log in again")
        if user.disabled:
            raise Unauthenticated("account is disabled")
        return UserCaller(user, record)
    unit = await store.find_unit_by_secret(device or "")
    if unit is None:
        raise Unauthenticated("unknown device credential")
    if unit.revoked_at is not None:
        raise Unauthenticated(f"device credential of unit {unit.id} was revoked")
    return DeviceCaller(unit)


def authorise(caller: Caller, allowed: frozenset[Access]) -> None:
    if caller.access not in allowed:
        wanted = ", ".join(sorted(allowed))
        # The role and the roles allowed, as details: a screen says the refusal in the user's language.
        raise Forbidden(f"role '{caller.access}' may not do this (allowed: {wanted})",
                        details={"role": str(caller.access), "allowed": sorted(allowed)})  # fmt: skip


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
