"""Log in, log out, and who am I."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiohttp import web

from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import LoginIn, LoginOut, MeOut, UserOut
from command_center.auth import PEOPLE, Access, DeviceCaller, UserCaller, current_caller, current_user
from command_center.credentials import lookup_hash, new_session_token
from command_center.keys import LOGIN_THROTTLE, PASSWORDS, REVOCATIONS, SETTINGS, STORE
from command_center.revocation import Revocation, Subject
from core.errors import Forbidden, TooManyRequests, Unauthenticated

api = Registry()


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
    errors=(Unauthenticated, TooManyRequests),
)
async def login(request: web.Request) -> web.StreamResponse:
    credentials = body(request, LoginIn)
    store, passwords, throttle = request.app[STORE], request.app[PASSWORDS], request.app[LOGIN_THROTTLE]
    address = client_address(request)
    wait = await throttle.wait_seconds(credentials.username, address)
    if wait > 0:
        raise TooManyRequests(f"too many failed logins; try again in {int(wait) + 1} s")
    user = await store.find_user(credentials.username)
    # Argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    valid = await asyncio.to_thread(passwords.verify, user.password_hash if user else None, credentials.password)
    if user is None or not valid or user.disabled:
        await throttle.failed(credentials.username, address)
        raise Unauthenticated("wrong username or password")
    await throttle.succeeded(credentials.username)
    token = new_session_token()
    ttl = request.app[SETTINGS].auth.session_ttl_seconds
    session = await store.add_session(
        token_hash=lookup_hash(token), user_id=user.id, expires_at=datetime.now(UTC) + timedelta(seconds=ttl)
    )
    return json_response(LoginOut(token=token, expires_at=session.expires_at, user=UserOut.of(user)))


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
        out = MeOut(kind="user", access=caller.access, court_id=caller.court_id, user=UserOut.of(caller.user))
    elif isinstance(caller, DeviceCaller):
        out = MeOut(kind="device", access=caller.access, court_id=caller.court_id, unit_id=caller.unit.id)
    else:  # not admitted by the route; kept total for the type checker
        raise Forbidden("only people and devices have a profile here")
    return json_response(out)
