"""Revocation reaching live connections, on every server process.

A request is authenticated once, but a socket or a media session outlives that check. So every live
connection is registered here with the credential it was opened with, and when a credential ends (a
session logged out, revoked by an admin or expired; a user disabled; a device revoked) each process closes
that credential's WebSockets (close code 4401 with a reason the client can show), ends its WHEP views and
talkback, and ends a device's media session with its data channel.

How a process learns it: the process that revokes applies it at once and publishes it on the bus topic
``credentials.revoked``; every process (the sender too) applies what it receives, idempotently. Expiry is
known locally (the session's ``expires_at``) and checked every second without I/O. Nothing is checked per
message. As a fallback for what no event announced (a CLI run on an in-process bus, a change made in the
database, a bus that lagged or was away), every ``auth.recheck_seconds`` the open credentials are checked
against the store in a couple of queries.

The pure part (``Revocation``, ``Credential``, ``matches``) takes values and returns values; ``Revocations``
is the driver that owns the registry, the bus subscription and the timers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from aiohttp import web

from command_center.auth import Caller, DeviceCaller, UserCaller
from config.settings import BusSettings
from core.errors import Forbidden
from core.ids import UnitId
from event_bus.factory import build_bus
from event_bus.port import EventBus
from media.sessions import Viewer
from persistence.port import Store

log = logging.getLogger(__name__)

REVOKED_TOPIC = "credentials.revoked"
#: WebSocket close code for "this credential no longer holds; authenticate again" (4000-4999: application's
#: own, RFC 6455 §7.4.2; 4401 mirrors HTTP 401). The close reason says which: revoked, logged out, expired…
CLOSE_REVOKED = 4401
EXPIRY_CHECK_SECONDS = 1.0
#: Revocations of a session or a unit remembered this long, so a socket registered just after one
#: (authenticated just before it) is ended too, without I/O. Such a credential never holds again.
RECENT_SECONDS = 10.0


class Subject(StrEnum):
    """What a revocation names: one session, every session of a user, or a unit's device credential."""

    SESSION = "session"  # the SHA-256 of the session token (what the store keeps)
    USER = "user"  # a user id: disabled, or logged out everywhere
    UNIT = "unit"  # a unit id: its device secret was revoked


@dataclass(frozen=True, slots=True)
class Revocation:
    subject: Subject
    key: str
    reason: str  # shown to the client as the close reason: "revoked", "logged out", "expired", "disabled"

    def as_event(self) -> dict[str, str]:
        return {"subject": self.subject.value, "key": self.key, "reason": self.reason}

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> Revocation:
        return cls(Subject(str(data["subject"])), str(data["key"]), str(data.get("reason", "revoked"))[:100])


@dataclass(frozen=True, slots=True)
class Credential:
    """What a live connection was opened with: a person's session, or a unit's device secret."""

    session_hash: str | None = None
    user_id: str | None = None
    unit_id: str | None = None
    expires_at: datetime | None = None

    @classmethod
    def of(cls, caller: Caller) -> Credential:
        if isinstance(caller, UserCaller):
            return cls(caller.session.token_hash, str(caller.user.id), None, caller.session.expires_at)
        if isinstance(caller, DeviceCaller):
            return cls(unit_id=str(caller.unit.id))
        # A system client reaches only the case integration route: plain requests, never a live connection.
        raise Forbidden("a system client opens no live connections")


def matches(credential: Credential, revocation: Revocation) -> bool:
    if revocation.subject is Subject.SESSION:
        return credential.session_hash == revocation.key
    if revocation.subject is Subject.USER:
        return credential.user_id == revocation.key
    return credential.unit_id == revocation.key


def expired(credential: Credential, now: datetime) -> bool:
    return credential.expires_at is not None and credential.expires_at <= now


# The driver ------------------------------------------------------------------------------------------

Close = Callable[[int, str], Awaitable[object]]


@dataclass(eq=False)
class Watch:
    """One registered connection. ``ended`` turns true the moment its credential is revoked, before the
    socket is closed, so a handler that reads it before acting on a message acts on nothing more."""

    credential: Credential
    close: Close
    ended: bool = False
    release: Callable[[], None] = field(default=lambda: None)
    closing: asyncio.Task[None] | None = None

    async def settle(self) -> None:
        """Unregister; when revoked, first wait until the close frame is out: a handler returning earlier
        would let aiohttp end the connection with a close of its own (1000, no reason) instead."""
        self.release()
        if self.closing is not None:
            await asyncio.shield(self.closing)


class LiveMedia(Protocol):
    """The media sessions a revocation ends (``media.sessions.MediaHub``): views, talkback, a unit's session."""

    def viewers(self) -> list[Viewer]: ...

    def streaming_units(self) -> set[UnitId]: ...

    async def end_views(self, match: Callable[[Viewer], bool], reason: str) -> int: ...

    async def end_unit(self, unit_id: UnitId, reason: str) -> bool: ...


class Revocations:
    """The registry of live connections of this process, and the way revocations reach them."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        recheck_seconds: float,
        media: LiveMedia,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``media``: this process's media sessions, ended with the credential that opened them."""
        self._store = store
        self._bus = bus
        self._recheck_seconds = recheck_seconds
        self._clock = clock
        self._ids = itertools.count()
        self._watches: dict[int, Watch] = {}
        #: The watches whose credential expires (users' sessions): the expiry sweep reads only these, not the
        #: thousands of unit sockets, whose device credentials never expire, every second.
        self._expiring: dict[int, Watch] = {}
        self._recent: collections.deque[tuple[float, Revocation]] = collections.deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._follow: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._media = media

    # life cycle
    async def start(self) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._follow = asyncio.create_task(self._follow_bus(ready), name="revocations-follow")
        await ready
        self._sweep = asyncio.create_task(self._sweep_forever(), name="revocations-sweep")

    async def close(self) -> None:
        for task in (self._follow, self._sweep):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # registering
    def watch(self, caller: Caller, close: Close) -> Watch:
        """Register a live connection; await ``settle()`` on the result when its handler ends."""
        key = next(self._ids)
        watch = Watch(Credential.of(caller), close)

        def release() -> None:
            self._watches.pop(key, None)
            self._expiring.pop(key, None)

        watch.release = release
        self._watches[key] = watch
        if watch.credential.expires_at is not None:
            self._expiring[key] = watch
        now = time.monotonic()
        for when, revocation in self._recent:
            # Not a user's: they may be enabled again and log in anew meanwhile (the recheck covers that race).
            if revocation.subject is Subject.USER or now - when >= RECENT_SECONDS:
                continue
            if matches(watch.credential, revocation):
                self._end(lambda c: c is watch.credential, revocation.reason)
                break
        return watch

    def watch_socket(self, caller: Caller, ws: web.WebSocketResponse) -> Watch:
        async def close(code: int, reason: str) -> object:
            return await ws.close(code=code, message=reason.encode()[:123])

        return self.watch(caller, close)

    # revoking
    async def announce(self, revocation: Revocation) -> None:
        """Apply here at once, then tell every process. A bus that is away is logged, not raised: the
        store already holds the revocation, and the other processes' recheck finds it."""
        await self.apply(revocation)
        try:
            await self._bus.publish(REVOKED_TOPIC, revocation.as_event())
        except Exception as exc:
            log.warning("revocation of %s %s not published (%s); other processes recheck", revocation.subject,
                        revocation.key[:12], exc)  # fmt: skip

    async def apply(self, revocation: Revocation) -> int:
        """End every connection of this process held by the credential; idempotent."""
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] >= RECENT_SECONDS:
            self._recent.popleft()
        self._recent.append((now, revocation))
        ended = self._end(lambda c: matches(c, revocation), revocation.reason)
        if revocation.subject is Subject.UNIT:
            ended += int(await self._media.end_unit(UnitId(revocation.key), f"device credential {revocation.reason}"))
        ended += await self._media.end_views(lambda viewer: _viewer_matches(viewer, revocation), revocation.reason)
        if ended:
            log.info("revocation of %s %s ended %d connection(s): %s", revocation.subject,
                     revocation.key[:12], ended, revocation.reason)  # fmt: skip
        return ended

    def _end(self, match: Callable[[Credential], bool], reason: str, among: dict[int, Watch] | None = None) -> int:
        """End the watched connections (of ``among``, a subset of all) whose credential matches."""
        ended = 0
        for key, watch in list((self._watches if among is None else among).items()):
            if watch.ended or not match(watch.credential):
                continue
            watch.ended = True
            self._watches.pop(key, None)
            self._expiring.pop(key, None)
            task = watch.closing = asyncio.create_task(self._close(watch, reason), name=f"revoke-close-{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            ended += 1
        return ended

    @staticmethod
    async def _close(watch: Watch, reason: str) -> None:
        try:
            await watch.close(CLOSE_REVOKED, reason)
        except Exception as exc:  # the peer is gone already: nothing left to close
            log.debug("closing a revoked connection failed (%s)", exc)

    # background
    async def _follow_bus(self, ready: asyncio.Future[None]) -> None:
        async with self._bus.subscribe([REVOKED_TOPIC], max_queue=10_000) as subscription:
            ready.set_result(None)
            while True:
                try:
                    event = await subscription.get()
                    await self.apply(Revocation.from_event(event.data))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a lag (events lost) or a bad event: check everything against the store
                    log.warning("revocations: an event was missed or bad; rechecking every open credential",
                                exc_info=True)  # fmt: skip
                    await self._recheck_logged()

    async def _sweep_forever(self) -> None:
        since_recheck = 0.0
        while True:
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)
            await self.end_expired()
            since_recheck += EXPIRY_CHECK_SECONDS
            if since_recheck >= self._recheck_seconds:
                since_recheck = 0.0
                await self._recheck_logged()

    async def end_expired(self) -> int:
        now = self._clock()
        ended = self._end(lambda c: expired(c, now), "expired", among=self._expiring)
        ended += await self._media.end_views(lambda v: v.expires_at is not None and v.expires_at <= now, "expired")
        return ended

    async def _recheck_logged(self) -> None:
        try:
            await self.recheck()
        except Exception as exc:
            log.warning("revocations: recheck against the store failed (%s); next time", exc)

    async def recheck(self) -> int:
        """Check the open credentials against the store: catches what no event announced."""
        credentials = [w.credential for w in self._watches.values()]
        credentials += [Credential(v.session, str(v.user_id), None, v.expires_at) for v in self._media.viewers()]
        credentials += [Credential(unit_id=str(unit_id)) for unit_id in self._media.streaming_units()]
        unit_ids = {c.unit_id for c in credentials if c.unit_id is not None}
        ended = 0
        if unit_ids:
            revoked = await self._store.revoked_unit_ids()
            for unit_id in unit_ids & revoked:
                ended += await self.apply(Revocation(Subject.UNIT, unit_id, "revoked"))
        for session_hash in {c.session_hash for c in credentials if c.session_hash is not None}:
            found = await self._store.find_session(session_hash)
            reason = None
            if found is None or found[0].revoked_at is not None:
                reason = "revoked"
            elif found[1].disabled:
                reason = "disabled"
            if reason is not None:
                ended += await self.apply(Revocation(Subject.SESSION, session_hash, reason))
        return ended


def _viewer_matches(viewer: Viewer, revocation: Revocation) -> bool:
    if revocation.subject is Subject.SESSION:
        return viewer.session == revocation.key
    if revocation.subject is Subject.USER:
        return str(viewer.user_id) == revocation.key
    return False


async def tell_servers(bus_settings: BusSettings, revocation: Revocation) -> bool:
    """Publish a revocation made outside a server (the CLI) so running servers act on it at once; False
    with the in-process bus, which no server shares (they find it at their next recheck)."""
    if bus_settings.url.startswith("memory://"):
        return False
    bus = build_bus(bus_settings)
    await bus.start()
    try:
        await bus.publish(REVOKED_TOPIC, revocation.as_event())
    finally:
        await bus.close()
    return True
