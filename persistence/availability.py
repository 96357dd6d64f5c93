"""Which failures mean "the database cannot be reached right now" — answered 503 (try again), not 500 (a bug).

Kept beside the adapters so the HTTP layer need not know which driver raised what.
"""

from __future__ import annotations

import sqlite3

import asyncpg

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset
    TimeoutError,
    asyncpg.PostgresConnectionError,  # the connection died in the middle of an operation
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.InterfaceError,  # the pool or connection is closed
    sqlite3.OperationalError,  # the database file is locked or gone
)


def store_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE)
