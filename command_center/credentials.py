"""Passwords, session tokens and device secrets.

Passwords are low-entropy, so they are hashed with Argon2id (RFC 9106). Session tokens and device secrets
are 256-bit random values made here, so a fast SHA-256 lookup hash is enough for them (a KDF adds nothing
against guessing 2^256, and a per-request KDF would cost a device 50 ms on every call).
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from config.settings import AuthSettings

#: Prefixes make a leaked credential recognisable in logs and secret scanners.
SESSION_PREFIX = "cc_s_"
DEVICE_PREFIX = "cc_d_"
SYSTEM_PREFIX = "cc_y_"  # the case-management system's client (立案系统)

MIN_PASSWORD_LENGTH = 10


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
