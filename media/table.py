"""The media session table of one server process: who streams, who watches, what must close. Decisions only.

Pure, after websockets' split of protocol from connection: no asyncio, no aiortc, no clock of its own. The
driver (``media.sessions.MediaHub``) tells it what happened (a session was asked for, connected, is being
closed) with the time, and does what it answers (close this one for that reason, take the unit's lease,
promote that one). So the rules below (caps, which of a unit's sessions is current, when a session that never
connected or went silent is given up) are tested with plain values (tests/test_media_table.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, NewType, TypeVar

from config.settings import MediaSettings
from core.errors import NotFound, ServiceUnavailable, TooManyRequests
from core.ids import CourtId, UnitId, UserId

SessionId = NewType("SessionId", str)


class Role(StrEnum):
    PUBLISHER = "publisher"  # a unit's source: WHIP, or another transport (module docstring of media.sessions)
    VIEWER = "viewer"  # an operator watching over WHEP
    TALKER = "talker"  # an operator talking to a unit (push-to-talk)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who holds a view or a talkback: caps count them, revocation ends them."""

    user_id: UserId
    username: str
    #: The viewer's session (its token's SHA-256) and when it expires: logging out, revoking or expiring
    #: it ends the view and the talkback (``MediaHub.end_views``).
    session: str | None = None
    expires_at: datetime | None = None
    court_id: CourtId | None = None  # the user's court: its users' sessions together are capped


@dataclass(eq=False)
class Session:
    """What the table knows of one session; the driver's session objects add their transport to it."""

    id: SessionId
    role: Role
    unit_id: UnitId
    created: float
    owner: Viewer | None = None
    connected_at: float | None = None
    last_media: float = 0.0  # a publisher's last frame (viewers and talkers: unused)


@dataclass(frozen=True, slots=True)
class Close:
    """Close this session for this reason."""

    session: Session
    reason: str


@dataclass(frozen=True, slots=True)
class Connected:
    """This session's transport just connected (a publisher then takes over its unit: ``promote``)."""

    session: Session


P = TypeVar("P", bound=Session)
S = TypeVar("S", bound=Session)


@dataclass(frozen=True, slots=True)
class PublishPlan(Generic[P]):
    """What a unit's new source means. ``now``: it is the unit's session at once (``replaced`` ends);
    otherwise it waits until connected while the working one (here or on another process) carries on, and
    ``replaced`` is an older waiting session it supersedes."""

    now: bool
    replaced: P | None


@dataclass(frozen=True, slots=True)
class Removal(Generic[P]):
    """What removing a session changes: a waiting publisher ``promoted`` to its unit's session, or the
    unit's media lease to ``release`` (no session of the unit is left here)."""

    promoted: P | None = None
    release: UnitId | None = None


class SessionTable(Generic[P, S]):
    """Every live session of the process: publishers (``P``) by unit, viewers and talkers (``S``) by id,
    and the places held against the caps (from the moment one is asked for until its transport is freed)."""

    def __init__(self, settings: MediaSettings) -> None:
        self._settings = settings
        self._places: dict[SessionId, Viewer | None] = {}
        self._publishers: dict[SessionId, P] = {}
        self._current: dict[UnitId, P] = {}  # the unit's session: its media is forwarded and recorded
        self._waiting: dict[UnitId, P] = {}  # a unit's newer session, until it connects (one per unit)
        self._others: dict[SessionId, S] = {}  # viewers and talkers

    # Caps -------------------------------------------------------------------------------------------

    @property
    def places(self) -> int:
        """Sessions holding a place (negotiating, live or being closed)."""
        return len(self._places)

    def hold(self, session_id: SessionId, owner: Viewer | None = None) -> None:
        """Take a place for a new session, or refuse: 503 when the process is full, 429 past the owner's or
        their court's cap (each with Retry-After: places of sessions that never connect are free by then).

        Caps are per process, like the peer connections they protect: a user's views live on the processes
        holding the watched units, so across several processes a user holds at most the cap on each."""
        settings = self._settings
        retry = math.ceil(settings.ice_timeout_seconds)
        if len(self._places) >= settings.max_sessions:
            raise ServiceUnavailable(f"media sessions are full ({settings.max_sessions} on this server); "
                                     f"try again later", retry_after=retry)  # fmt: skip
        if owner is not None:
            owners = [o for o in self._places.values() if o is not None]
            mine = sum(1 for o in owners if o.user_id == owner.user_id)
            if mine >= settings.max_sessions_per_user:
                raise TooManyRequests(f"{owner.username} has {mine} media sessions open on this server (limit "
                                      f"{settings.max_sessions_per_user} per user); end one first",
                                      retry_after=retry)  # fmt: skip
            court = sum(1 for o in owners if o.court_id == owner.court_id)
            if owner.court_id is not None and court >= settings.max_sessions_per_court:
                raise TooManyRequests(f"court {owner.court_id} has {court} media sessions open on this server "
                                      f"(limit {settings.max_sessions_per_court} per court); try again later",
                                      retry_after=retry)  # fmt: skip
        self._places[session_id] = owner

    def release(self, session_id: SessionId) -> None:
        """The session's transport is freed: its place goes back."""
        self._places.pop(session_id, None)

    # Publishers -------------------------------------------------------------------------------------

    def current(self, unit_id: UnitId) -> P | None:
        return self._current.get(unit_id)

    def streaming_units(self) -> set[UnitId]:
        return set(self._current)

    def publish(self, publisher: P, *, streams_elsewhere: bool = False) -> PublishPlan[P]:
        """Register a unit's new source. While the unit streams (a connected session here, or one on another
        process) the new one waits until connected, so a failed attempt never interrupts a working stream."""
        unit_id = publisher.unit_id
        self._publishers[publisher.id] = publisher
        previous = self._current.get(unit_id)
        working = previous is not None and previous.connected_at is not None
        if working or (previous is None and streams_elsewhere):
            stale, self._waiting[unit_id] = self._waiting.get(unit_id), publisher
            return PublishPlan(now=False, replaced=stale)
        self._current[unit_id] = publisher
        return PublishPlan(now=True, replaced=previous)

    def promote(self, publisher: P) -> tuple[bool, P | None]:
        """A waiting session connected: it becomes the unit's session. Returns whether it did, and the
        session it replaces (to be closed with its viewers, who watch again on the new one)."""
        unit_id = publisher.unit_id
        if self._waiting.get(unit_id) is not publisher:
            return False, None
        del self._waiting[unit_id]
        previous = self._current.get(unit_id)
        self._current[unit_id] = publisher
        return True, previous

    def waiting(self, unit_id: UnitId) -> P | None:
        return self._waiting.get(unit_id)

    # Viewers and talkers ----------------------------------------------------------------------------

    def add(self, session: S) -> None:
        self._others[session.id] = session

    def owned(self, role: Role, session_id: SessionId, user_id: UserId, unit_id: UnitId) -> S:
        """The caller's own view or talkback of that unit; 404 for anyone else's (no hint it exists)."""
        session = self._others.get(session_id)
        if (
            session is None
            or session.role is not role
            or session.owner is None
            or session.owner.user_id != user_id
            or session.unit_id != unit_id
        ):
            what = "WHEP session" if role is Role.VIEWER else "talkback session"
            raise NotFound(f"no {what} {session_id} of yours on unit {unit_id}")
        return session

    def publisher_of(self, session_id: SessionId, unit_id: UnitId) -> P:
        publisher = self._publishers.get(session_id)
        if publisher is None or publisher.unit_id != unit_id:
            raise NotFound(f"no WHIP session {session_id} of unit {unit_id}")
        return publisher

    def others(self) -> list[S]:
        return list(self._others.values())

    def get(self, session_id: SessionId) -> P | S | None:
        publisher = self._publishers.get(session_id)
        return publisher if publisher is not None else self._others.get(session_id)

    def __iter__(self) -> Iterator[P | S]:
        yield from list(self._publishers.values())
        yield from list(self._others.values())

    # Ending -----------------------------------------------------------------------------------------

    def remove(self, session: P | S) -> Removal[P]:
        """The session is being closed: it leaves the table at once (lookups no longer find it), its place
        stays held until ``release``. A unit's current session that ends hands over to its waiting one."""
        if session.role is not Role.PUBLISHER:
            self._others.pop(session.id, None)
            return Removal()
        unit_id = session.unit_id
        self._publishers.pop(session.id, None)
        if self._waiting.get(unit_id) is session:
            del self._waiting[unit_id]
        if self._current.get(unit_id) is not session:
            return Removal()
        del self._current[unit_id]
        waiting = self._waiting.pop(unit_id, None)
        if waiting is not None:
            self._current[unit_id] = waiting
            return Removal(promoted=waiting)
        return Removal(release=unit_id)

    def supervise(self, now: float, state_of: Callable[[P | S], str]) -> list[Close | Connected]:
        """One round of supervision: what connected, what failed, what never connected in time, which unit
        went silent. ``state_of`` gives a session's transport state (``RTCPeerConnection.connectionState``
        words: new, connecting, connected, disconnected, failed, closed)."""
        settings = self._settings
        actions: list[Close | Connected] = []
        for session in self:
            state = state_of(session)
            if state in ("failed", "closed"):
                actions.append(Close(session, f"connection {state}"))
            elif session.connected_at is None:
                if state == "connected":
                    session.connected_at = now
                    session.last_media = max(session.last_media, now)
                    actions.append(Connected(session))
                elif now - session.created > settings.ice_timeout_seconds:
                    actions.append(Close(session, f"not connected after {settings.ice_timeout_seconds:g} s"))
            elif session.role is Role.PUBLISHER and now - session.last_media > settings.silence_timeout_seconds:
                actions.append(Close(session, f"no media for {settings.silence_timeout_seconds:g} s"))
        return actions
