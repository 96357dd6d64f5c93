"""Passwords, session tokens and device secrets.

Passwords are low-entropy, so they are hashed with Argon2id (RFC 9106). Session tokens and device secrets
are 256-bit random values made here, so a fast SHA-256 lookup hash is enough for them (a KDF adds nothing
against guessing 2^256, and a per-request KDF would cost a device 50 ms on every call).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from config.settings import AuthSettings
from core.errors import ServiceUnavailable, TooManyRequests, ValidationFailed

#: Prefixes make a leaked credential recognisable in logs and secret scanners.
SESSION_PREFIX = "cc_s_"
DEVICE_PREFIX = "cc_d_"
SYSTEM_PREFIX = "cc_y_"  # the case-management system's client (立案系统)

MIN_PASSWORD_LENGTH = 10
#: zxcvbn's score (0-4) a new password must reach: 3 is "safely unguessable", about 10^10 guesses.
MIN_PASSWORD_SCORE = 3
#: zxcvbn refuses longer input (its matching grows fast: 256 repeated characters cost it 0.8 s), so a longer
#: passphrase is judged by its first 72 characters; the rest adds to it unjudged.
JUDGED_CHARACTERS = 72


class Passwords:
    """Argon2id hashing with the configured cost."""

    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the username is unknown, so timing does not reveal which names exist.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def check_password_strength(password: str, *, username: str, display_name: str, field: str = "password") -> None:
    """Refuse a guessable password with the reason (422), wherever a password is set.

    Length alone let ten spaces through; zxcvbn (Dropbox's estimator) also knows common passwords, words,
    keyboard runs, repeats, dates and the user's own names, which are passed as user inputs.
    """
    problem = ""
    if len(password) < MIN_PASSWORD_LENGTH:
        problem = f"must have at least {MIN_PASSWORD_LENGTH} characters"
    elif len(password) > 256:
        problem = "must have at most 256 characters"
    else:
        names = [n for n in (username, display_name) if n]
        verdict = zxcvbn(password[:JUDGED_CHARACTERS], user_inputs=names + [part for n in names for part in n.split()])
        if verdict["score"] < MIN_PASSWORD_SCORE:
            feedback = verdict["feedback"]
            hints = " ".join(h for h in [feedback.get("warning") or "", *feedback.get("suggestions", [])] if h)
            judged = "" if len(password) <= JUDGED_CHARACTERS else f" in its first {JUDGED_CHARACTERS} characters"
            problem = (
                f"too easy to guess{judged} (strength {verdict['score']} of 4, at least {MIN_PASSWORD_SCORE} needed)"
            )
            problem += f": {hints}" if hints else ""
    if problem:
        raise ValidationFailed(f"{field}: {problem}", details=[{"field": field, "problem": problem}])


class VerifyGate:
    """Argon2 verifications are bounded: a flood of logins must not queue unbounded CPU work in front of a
    real user's login (an unknown username costs a verification too: the decoy).

    Admission is decided at once, before anything waits, in two steps. ``admit``: an address may have
    ``per_address`` logins under way (429 beyond: one flooding address cannot fill the queue). ``queue``: the
    process checks at most ``workers`` passwords at once with ``waiting`` more queued (503 beyond), and
    logins for unknown usernames may take only part of that room: a third of it (at least one place) is kept
    for existing users, so a flood of made-up names from many addresses cannot keep real users out. (That a
    name exists could be told from which refusal a probe gets while such a flood holds the unknown share;
    being kept out of one's own centre is the worse harm.) The verifications run on ``workers`` threads of
    their own, not the default executor shared with other work; Retry-After estimates when there is room.
    """

    def __init__(self, passwords: Passwords, *, workers: int, waiting: int, per_address: int) -> None:
        self._passwords = passwords
        self._workers, self._capacity, self._per_address = workers, workers + waiting, per_address
        self._unknown_capacity = self._capacity - max(1, self._capacity // 3)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2",
                                            initializer=_yield_to_the_event_loop)  # fmt: skip
        self._queued = self._queued_unknown = 0
        self._by_address: Counter[str] = Counter()
        self._seconds = 0.1  # running estimate of one verification, for Retry-After

    @asynccontextmanager
    async def admit(self, address: str) -> AsyncIterator[None]:
        """Take one of the address's places for a login, or refuse it at once (429)."""
        if self._by_address[address] >= self._per_address:
            raise TooManyRequests("logins from this address are already being checked; try again shortly",
                                  retry_after=1)  # fmt: skip
        self._by_address[address] += 1
        try:
            yield
        finally:
            self._by_address[address] -= 1
            if not self._by_address[address]:
                del self._by_address[address]

    @asynccontextmanager
    async def queue(self, *, known: bool) -> AsyncIterator[None]:
        """Take a place in the verification queue (for an existing user or not), or refuse at once (503)."""
        if self._queued >= self._capacity or (not known and self._queued_unknown >= self._unknown_capacity):
            wait = self._seconds * self._capacity / self._workers
            raise ServiceUnavailable("too many logins at once; try again shortly", retry_after=wait)
        self._queued += 1
        self._queued_unknown += not known
        try:
            yield
        finally:
            self._queued -= 1
            self._queued_unknown -= not known

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password on the gate's threads (call inside ``queue``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed_verify, password_hash, password)

    def _timed_verify(self, password_hash: str | None, password: str) -> bool:
        started = time.perf_counter()
        try:
            return self._passwords.verify(password_hash, password)
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_device_secret() -> str:
    return DEVICE_PREFIX + secrets.token_urlsafe(32)


def new_system_secret() -> str:
    return SYSTEM_PREFIX + secrets.token_urlsafe(32)


def lookup_hash(secret: str) -> str:
    """The stored form of a token or device secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_password() -> str:
    """A generated password for the first administrator (shown once)."""
    return secrets.token_urlsafe(15)


def verify_threads() -> int:
    """Password checks at once when not configured: the cores this process may run on less one for the event
    loop, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _yield_to_the_event_loop() -> None:
    """Each password-check thread runs at a lower CPU priority than the event loop (Linux: per-thread nice): on
    a core they share, refusing a flood and serving everyone else comes before hashing guesses."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: plain priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
