"""Log in, log out, and who am I."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import LoginIn, LoginOut, MeOut, PasswordChangeIn, UserOut
from command_center.auth import PEOPLE, Access, DeviceCaller, UserCaller, current_caller, current_user
from command_center.bootstrap import FIRST_ADMIN, FIRST_ADMIN_FILE
from command_center.credentials import check_password_strength, lookup_hash, new_session_token
from command_center.keys import LOGIN_GATE, LOGIN_THROTTLE, METRICS, PASSWORDS, REVOCATIONS, SETTINGS, STORE
from command_center.revocation import Revocation, Subject
from core.errors import Forbidden, ServiceUnavailable, TooManyRequests, Unauthenticated, ValidationFailed
from core.ids import UserId
from courts.visibility import oversees_every_court
from persistence.models import User

api = Registry()
log = logging.getLogger(__name__)


def client_address(request: web.Request) -> str:
    """The caller's address; behind a trusted proxy, the last address it added to X-Forwarded-For."""
    remote = request.remote or "unknown"
    if remote in request.app[SETTINGS].server.trusted_proxies:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if forwarded:
            return forwarded[-1]
    return remote


@api.route(
    "POST",
    "/api/auth/login",
    summary="Exchange username and password for a session token",
    tag="auth",
    access=None,
    body=LoginIn,
    response=LoginOut,
    errors=(Unauthenticated, TooManyRequests, ServiceUnavailable),
)
async def login(request: web.Request) -> web.StreamResponse:
    credentials = body(request, LoginIn)
    failures = request.app[METRICS].login_failures
    try:
        user = await verified_user(request, credentials.username, credentials.password)
    except Unauthenticated:
        failures.labels("wrong_credentials").inc()
        raise
    except TooManyRequests:
        failures.labels("throttled").inc()
        raise
    except ServiceUnavailable:
        failures.labels("busy").inc()
        raise
    return json_response(await _new_session(request, user))


async def verified_user(request: web.Request, username: str, password: str) -> User:
    """Check a username and password under the throttle and the bounded verifier, or raise.

    In this order, each refusal costing nothing of what follows: one of the address's places (429 at once),
    the user looked up, a place in the verification queue (503 at once; unknown usernames get only part of
    it), then the attempt is counted, atomically with the lock check (429 while locked), and only then is
    Argon2 run, off the event loop. So a flood never gets more verifications than the counts allow, and a
    refused request has counted no failure against the user.
    """
    store, throttle, gate = request.app[STORE], request.app[LOGIN_THROTTLE], request.app[LOGIN_GATE]
    address = client_address(request)
    async with gate.admit(address):
        user = await store.find_user(username)
        async with gate.queue(known=user is not None):
            wait = await throttle.attempt(username, address)
            if wait > 0:
                raise TooManyRequests(f"too many failed logins; try again in {int(wait) + 1} s", retry_after=wait)
            valid = await gate.verify(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled:
        raise Unauthenticated("wrong username or password")
    await throttle.succeeded(username, address)
    return user


async def _new_session(request: web.Request, user: User) -> LoginOut:
    token = new_session_token()
    ttl = request.app[SETTINGS].auth.session_ttl_seconds
    session = await request.app[STORE].add_session(
        token_hash=lookup_hash(token), user_id=user.id, expires_at=datetime.now(UTC) + timedelta(seconds=ttl)
    )
    return LoginOut(token=token, expires_at=session.expires_at, user=UserOut.of(user))


@api.route(
    "POST",
    "/api/auth/password",
    summary="Change the caller's own password; every session of the user is revoked and a new token returned",
    tag="auth",
    access=PEOPLE,
    body=PasswordChangeIn,
    response=LoginOut,
    errors=(Forbidden, ValidationFailed, TooManyRequests, ServiceUnavailable),
)
async def change_password(request: web.Request) -> web.StreamResponse:
    """Whoever changes a password may be locking out someone who learned the old one: every session of the
    user ends, this one included (a stolen token must not survive), and the caller gets a fresh token. The
    old password is checked like a login (throttled, bounded), so a stolen token cannot guess it freely."""
    data = body(request, PasswordChangeIn)
    caller = current_user(request)
    try:
        user = await verified_user(request, caller.user.username, data.old_password)
    except Unauthenticated:
        raise Forbidden("old_password: the current password is wrong") from None
    if data.new_password == data.old_password:
        raise ValidationFailed("new_password: must differ from the current password")
    check_password_strength(data.new_password, username=user.username, display_name=user.display_name,
                            field="new_password")  # fmt: skip
    store = request.app[STORE]
    password_hash = await asyncio.to_thread(request.app[PASSWORDS].hash, data.new_password)
    await store.set_password(UserId(user.id), password_hash)
    revoked = await store.revoke_user_sessions(UserId(user.id))
    # their open screens, views and talkback end too, on every process
    await request.app[REVOCATIONS].announce(Revocation(Subject.USER, str(user.id), "password changed"))
    if user.username == FIRST_ADMIN:  # the first administrator's generated password is no longer the login
        (request.app[SETTINGS].data_dir / FIRST_ADMIN_FILE).unlink(missing_ok=True)
    log.info("user %s (%s) changed their password; %d sessions revoked", user.id, user.username, revoked)
    return json_response(await _new_session(request, user))


@api.route("POST", "/api/auth/logout", summary="Revoke the calling session token", tag="auth", access=PEOPLE)
async def logout(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    await request.app[STORE].revoke_session(caller.session.token_hash)
    # The session's screens, views and talkback end too, on every process.
    await request.app[REVOCATIONS].announce(Revocation(Subject.SESSION, caller.session.token_hash, "logged out"))
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/me",
    summary="The calling user or device",
    tag="auth",
    access=PEOPLE | {Access.DEVICE},
    response=MeOut,
)
async def me(request: web.Request) -> web.StreamResponse:
    caller = current_caller(request)
    if isinstance(caller, UserCaller):
        out = MeOut(
            kind="user",
            access=caller.access,
            court_id=caller.court_id,
            user=UserOut.of(caller.user),
            oversees_every_court=await oversees_every_court(request.app[STORE], caller),
        )
    elif isinstance(caller, DeviceCaller):
        out = MeOut(kind="device", access=caller.access, court_id=caller.court_id, unit_id=caller.unit.id)
    else:  # not admitted by the route; kept total for the type checker
        raise Forbidden("only people and devices have a profile here")
    return json_response(out)
