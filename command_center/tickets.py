"""WebSocket tickets: the one credential that may travel in a URL, because it is worth nothing once used.

A browser's ``WebSocket`` cannot send an ``Authorization`` header, so a page (or a device) first asks
``POST /api/auth/ticket`` with its real token and opens the socket with ``?ticket=…``. A ticket lives
``auth.ticket_ttl_seconds`` (30 s), is redeemed at most once, and names the credential it was made from by
that credential's lookup hash (never the token itself), which is authenticated again when it is redeemed.

With several processes a ticket issued by one is redeemed by whichever the socket reaches, so they are kept
in Redis (``SET … EX`` then ``GETDEL``: the expiry is Redis's own and single use is one atomic command);
one process keeps them in memory. Tickets are not kept in the database: they live seconds, nothing needs
them after a restart, and Redis expires them without a cleanup job. Redis away: issuing and redeeming fail
with 503 and the page retries (a ticket cannot be checked anywhere else).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from command_center.credentials import lookup_hash
from core.errors import ServiceUnavailable

TICKET_PREFIX = "cc_t_"
MAX_LOCAL_TICKETS = 100_000  # a bound on memory: past it the oldest tickets are dropped (they expire soon anyway)


def new_ticket() -> str:
    return TICKET_PREFIX + secrets.token_urlsafe(24)


class TicketBook(Protocol):
    async def issue(self, credential: str) -> str:
        """A new ticket standing for ``credential`` (a kind and a lookup hash, e.g. ``s:<sha256>``)."""

    async def redeem(self, ticket: str) -> str | None:
        """The credential the ticket stands for, once; None when unknown, used or expired."""

    async def close(self) -> None: ...


class LocalTickets:
    """Tickets of one process, in memory."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._tickets: dict[str, tuple[float, str]] = {}  # lookup hash of the ticket → (expires, credential)

    async def issue(self, credential: str) -> str:
        now = self._clock()
        if len(self._tickets) >= MAX_LOCAL_TICKETS:
            self._prune(now)
        while len(self._tickets) >= MAX_LOCAL_TICKETS:
            del self._tickets[next(iter(self._tickets))]
        ticket = new_ticket()
        self._tickets[lookup_hash(ticket)] = (now + self._ttl, credential)
        return ticket

    async def redeem(self, ticket: str) -> str | None:
        found = self._tickets.pop(lookup_hash(ticket), None)
        if found is None or found[0] <= self._clock():
            return None
        return found[1]

    def _prune(self, now: float) -> None:
        for key, (expires, _) in list(self._tickets.items()):
            if expires <= now:
                del self._tickets[key]

    async def close(self) -> None:
        self._tickets.clear()


class RedisTickets:
    """Tickets shared by every process, in Redis under the bus's namespace."""

    def __init__(self, url: str, *, namespace: str, ttl_seconds: float) -> None:
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._ns = namespace
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    def _key(self, ticket: str) -> str:
        return f"{self._ns}:ticket:{lookup_hash(ticket)}"

    async def issue(self, credential: str) -> str:
        ticket = new_ticket()
        try:
            await self._redis.set(self._key(ticket), credential, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("tickets cannot be issued now (Redis unavailable); try again") from exc
        return ticket

    async def redeem(self, ticket: str) -> str | None:
        try:
            found = await self._redis.getdel(self._key(ticket))
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("tickets cannot be checked now (Redis unavailable); try again") from exc
        return None if found is None else str(found)

    async def close(self) -> None:
        await self._redis.aclose()
