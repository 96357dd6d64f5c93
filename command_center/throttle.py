"""Login throttling: repeated failures make a username at an address, a username, or an address wait.

Pure bookkeeping with the clock passed in. Three records are kept per attempt:

- the username *at this address*: 5 free attempts, then locked 30 s, doubling per further failure up to
  15 minutes. This is the lock a guesser meets, and it does not follow the real user to another console;
- the username *across addresses*: 20 free attempts, then a short delay (5 s doubling, at most 60 s), so a
  guesser spread over many addresses is slowed, yet nobody can lock a user out from everywhere for long;
- the client *address*: 20 free attempts (consoles may share one address), then 30 s up to 15 minutes, so
  one machine spraying many usernames is slowed down.

An attempt is counted *before* the password is checked (``attempt``), atomically with the lock check, so
parallel guesses cannot all slip past a count that has not happened yet; a success takes its count back
(the username's records are cleared, the address gets its attempt back). A key quiet for an hour starts
afresh. An administrator can clear a username's records (``unlock``).

The login route talks to a ``LoginGuard``: ``LocalLoginGuard`` keeps the records in this process; with
several processes ``RedisLoginGuard`` (``command_center/shared_throttle.py``) keeps them in Redis, so a
guesser does not get five tries per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

PAIR_FREE_ATTEMPTS = 5
USER_FREE_ATTEMPTS = 20
ADDRESS_FREE_ATTEMPTS = 20
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 900.0
USER_FIRST_DELAY_S = 5.0
USER_MAX_DELAY_S = 60.0
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
    first_lock: float = FIRST_LOCK_S
    max_lock: float = MAX_LOCK_S
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
            lock = min(self.first_lock * 2 ** (record.failures - self.free_attempts), self.max_lock)
            record.locked_until = now + lock
        if len(self._records) > MAX_KEYS:  # drop a tenth at once: a flood of new keys must not sort every time
            keep = MAX_KEYS * 9 // 10
            for stale in sorted(self._records, key=lambda k: self._records[k].last)[: len(self._records) - keep]:
                del self._records[stale]

    def refund(self, key: str) -> None:
        """Give back one counted attempt (it turned out to be a success)."""
        record = self._records.get(key)
        if record is None:
            return
        record.failures = max(0, record.failures - 1)
        if record.failures < self.free_attempts:
            record.locked_until = 0.0

    def succeeded(self, key: str) -> bool:
        """Clear the key's record; whether there was one."""
        return self._records.pop(key, None) is not None

    def forget(self, prefix: str) -> int:
        """Drop every record whose key starts with ``prefix``; how many were dropped."""
        keys = [k for k in self._records if k.startswith(prefix)]
        for key in keys:
            del self._records[key]
        return len(keys)


def pair_key(username: str, address: str) -> str:
    """The record of one username at one address (a newline cannot occur in either)."""
    return f"{username.lower()}\n{address}"


@dataclass
class LoginThrottle:
    pairs: Throttle = field(default_factory=lambda: Throttle(free_attempts=PAIR_FREE_ATTEMPTS))
    users: Throttle = field(
        default_factory=lambda: Throttle(USER_FREE_ATTEMPTS, first_lock=USER_FIRST_DELAY_S, max_lock=USER_MAX_DELAY_S)
    )
    addresses: Throttle = field(default_factory=lambda: Throttle(free_attempts=ADDRESS_FREE_ATTEMPTS))

    def wait_seconds(self, username: str, address: str, now: float) -> float:
        return max(
            self.pairs.wait_seconds(pair_key(username, address), now),
            self.users.wait_seconds(username.lower(), now),
            self.addresses.wait_seconds(address, now),
        )

    def attempt(self, username: str, address: str, now: float) -> float:
        """Count an attempt before it is checked; the wait instead (and nothing counted) while locked."""
        wait = self.wait_seconds(username, address, now)
        if wait > 0:
            return wait
        self.pairs.failed(pair_key(username, address), now)
        self.users.failed(username.lower(), now)
        self.addresses.failed(address, now)
        return 0.0

    def succeeded(self, username: str, address: str) -> None:
        self.pairs.succeeded(pair_key(username, address))
        self.users.succeeded(username.lower())
        self.addresses.refund(address)

    def unlock(self, username: str) -> int:
        """Clear a username's records at every address and across addresses; how many there were."""
        return self.pairs.forget(pair_key(username, "")) + self.users.succeeded(username.lower())


class LoginGuard(Protocol):
    async def attempt(self, username: str, address: str) -> float:
        """Count this attempt before the password is checked; or how long it must wait (nothing counted)."""

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: clear the username's records and give the address its attempt back."""

    async def unlock(self, username: str) -> int:
        """An administrator clears the username's records everywhere; how many records there were."""


class LocalLoginGuard:
    """One process: the records live here, on the monotonic clock."""

    def __init__(self) -> None:
        self.throttle = LoginThrottle()

    async def attempt(self, username: str, address: str) -> float:
        return self.throttle.attempt(username, address, time.monotonic())

    async def succeeded(self, username: str, address: str) -> None:
        self.throttle.succeeded(username, address)

    async def unlock(self, username: str) -> int:
        return self.throttle.unlock(username)
