"""The one SQL interface every query is written against, whichever database runs it.

Queries are written once, in PostgreSQL's spelling: ``$1`` placeholders, ``col = ANY($n)`` for "one of a
list" (the parameter a Python list), ``::type`` casts where PostgreSQL needs them, ``ON CONFLICT`` upserts,
``RETURNING``, ``FOR UPDATE``. The PostgreSQL adapter (``persistence.pg_database``) hands them to asyncpg
untouched; the SQLite adapter (``persistence.sqlite_database``) rewrites them once per text
(``sqlite_spelling``). Both map driver errors to ``core.errors`` (unique → Conflict, foreign key →
NotFound), so no caller sees a driver exception, and both take a ``Position`` batch their own fastest way
(COPY on PostgreSQL). This module imports no driver: the SQLite path never loads asyncpg.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from core.ids import UnitId
from persistence.migrations import Migration
from persistence.models import Position


class Row(Protocol):
    """A result row, by column name or position (an asyncpg ``Record`` or a ``sqlite3.Row``)."""

    def __getitem__(self, key: str | int, /) -> Any: ...


class Connection(Protocol):
    """One connection for one unit of work (inside ``Database.transaction`` or one statement)."""

    dialect: str

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it touched."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def timestamp(self, value: datetime) -> Any:
        """A time as this database's column stores it (TIMESTAMPTZ, or REAL epoch seconds on SQLite)."""

    async def hold(self, *key: int) -> None:
        """Inside a transaction: take the writer lock named by one key or two and hold it to commit, also
        across processes (a PostgreSQL advisory lock; on SQLite ``BEGIN IMMEDIATE`` already holds the one
        database write lock, so nothing to do)."""

    def rows_table(
        self, first: int, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[Any]]:
        """Rows sent as parameters from ``$first`` on, to read as a table ``v`` of these (name, PostgreSQL
        type) columns: ``… FROM {fragment} WHERE …``. One statement for a whole batch: ``unnest`` of one
        array per column on PostgreSQL, ``json_each`` of one JSON list of rows on SQLite."""


class Database(Connection, Protocol):
    """The pool (or the one SQLite connection); each call outside ``transaction`` is its own unit of work."""

    def transaction(
        self, *, hold: tuple[int, ...] = (), reserved: bool = False
    ) -> AbstractAsyncContextManager[Connection]:
        """One transaction on one connection, committed when the block ends without an error.

        ``hold``: the writer lock (``Connection.hold``) the transaction takes first. Callers in this process
        wait for their turn at it before borrowing a connection: a caller queued at the lock with a pooled
        connection in hand keeps that connection from every other writer (a hundred submissions
        queued at the audit chain's lock once held the whole pool, and the agencies' answers waited for it).

        ``reserved``: on a connection kept for it, which no other unit of work (audit appends, submissions,
        reads) may borrow: the broker's grouped writes of agencies' answers, whose latency the judge's screen
        waits on, never queue behind a burst of other traffic for a connection. Meaningless with one connection
        (SQLite)."""

    def autocommit(self, *, reserved: bool = False) -> AbstractAsyncContextManager[Connection]:
        """One connection for statements outside a transaction, each its own unit of work (one statement is
        atomic alone): a write made in one statement costs one round trip, not three with BEGIN and COMMIT.
        ``reserved`` as in ``transaction``."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def applied_migrations(self) -> list[int]: ...

    async def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the pending ones in order, each with its record in one transaction; the versions applied."""

    async def version(self) -> str:
        """The server's version (a round trip: raises when the database is unreachable)."""

    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        """Store a telemetry batch in one transaction; the (unit, seq) keys that were new. Each unit's
        latest position moves forward when the batch holds a newer fix (``Store.insert_positions``)."""


def instant(value: Any) -> datetime | None:
    """A stored time as a datetime: TIMESTAMPTZ arrives as one, SQLite's REAL epoch seconds do not."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


def instant_required(value: Any) -> datetime:
    """``instant`` for a NOT NULL column."""
    stamped = instant(value)
    if stamped is None:
        raise ValueError("a NOT NULL time column held NULL")
    return stamped


POSITION_COLUMNS = (
    "unit_id", "seq", "fix_time_ms", "lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m",
    "battery_pct", "sos", "received_ms",
)  # fmt: skip


def position_row(p: Position) -> tuple[Any, ...]:
    """A position in ``POSITION_COLUMNS`` order."""
    return (
        p.unit_id, p.seq, p.fix_time_ms, p.lat, p.lon, p.accuracy_m, p.speed_mps, p.heading_deg, p.altitude_m,
        p.battery_pct, p.sos, p.received_ms,
    )  # fmt: skip


def position_from_row(row: Row) -> Position:
    return Position(
        unit_id=UnitId(row["unit_id"]),
        seq=row["seq"],
        fix_time_ms=row["fix_time_ms"],
        lat=row["lat"],
        lon=row["lon"],
        accuracy_m=row["accuracy_m"],
        speed_mps=row["speed_mps"],
        heading_deg=row["heading_deg"],
        altitude_m=row["altitude_m"],
        battery_pct=row["battery_pct"],
        sos=bool(row["sos"]),
        received_ms=row["received_ms"],
    )
