"""Login throttling: after repeated failures a username (and, separately, a client address) must wait.

Pure bookkeeping with the clock passed in. Past ``free_attempts`` failures in a row a key is locked for
30 s, and each further failure doubles the wait, up to 15 minutes; a success clears the username's record.
Usernames get 5 free attempts; a client address gets more (20), since a command centre's consoles may
share one address, yet one machine spraying many usernames is still slowed down.

The login route talks to a ``LoginGuard``: ``LocalLoginGuard`` keeps the records in this process; with
several processes ``RedisLoginGuard`` (``command_center/shared_throttle.py``) keeps them in Redis, so a
guesser does not get five tries per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

USER_FREE_ATTEMPTS = 5
ADDRESS_FREE_ATTEMPTS = 20
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 900.0
FORGET_AFTER_S = 3600.0  # a key quiet this long starts afresh
MAX_KEYS = 100_000  # memory bound: the least recently seen records are dropped first


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class Throttle:
    free_attempts: int
    _records: dict[str, _Record] = field(default_factory=dict)

    def wait_seconds(self, key: str, now: float) -> float:
        """How long the key must still wait before another attempt (0: go ahead)."""
        record = self._records.get(key)
        return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, key: str, now: float) -> None:
        record = self._records.get(key)
        if record is None or now - record.last > FORGET_AFTER_S:
            record = self._records[key] = _Record()
        record.failures += 1
        record.last = now
        if record.failures >= self.free_attempts:
            record.locked_until = now + min(FIRST_LOCK_S * 2 ** (record.failures - self.free_attempts), MAX_LOCK_S)
        if len(self._records) > MAX_KEYS:
            for stale in sorted(self._records, key=lambda k: self._records[k].last)[: len(self._records) - MAX_KEYS]:
                del self._records[stale]

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)


@dataclass
class LoginThrottle:
    users: Throttle = field(default_factory=lambda: Throttle(free_attempts=USER_FREE_ATTEMPTS))
    addresses: Throttle = field(default_factory=lambda: Throttle(free_attempts=ADDRESS_FREE_ATTEMPTS))

    def wait_seconds(self, username: str, address: str, now: float) -> float:
        return max(self.users.wait_seconds(username.lower(), now), self.addresses.wait_seconds(address, now))

    def failed(self, username: str, address: str, now: float) -> None:
        self.users.failed(username.lower(), now)
        self.addresses.failed(address, now)

    def succeeded(self, username: str) -> None:
        self.users.succeeded(username.lower())


class LoginGuard(Protocol):
    async def wait_seconds(self, username: str, address: str) -> float:
        """How long this username or address must still wait (0: go ahead)."""

    async def failed(self, username: str, address: str) -> None: ...

    async def succeeded(self, username: str) -> None: ...


class LocalLoginGuard:
    """One process: the records live here, on the monotonic clock."""

    def __init__(self) -> None:
        self.throttle = LoginThrottle()

    async def wait_seconds(self, username: str, address: str) -> float:
        return self.throttle.wait_seconds(username, address, time.monotonic())

    async def failed(self, username: str, address: str) -> None:
        self.throttle.failed(username, address, time.monotonic())

    async def succeeded(self, username: str) -> None:
        self.throttle.succeeded(username)
