"""SQLite under the ``persistence.database`` interface: aiosqlite, queries rewritten from PostgreSQL's spelling.

One connection in WAL mode, foreign keys on; aiosqlite runs each statement on its own thread so the event
loop never blocks on the file. The one connection is held by one coroutine at a time (an asyncio lock: two
must not interleave their BEGIN … COMMIT) and a transaction is ``BEGIN IMMEDIATE`` (the database's write
lock, also across processes). Times are stored as REAL epoch seconds; a list parameter goes in as JSON and
is read back with ``json_each``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from core.ids import UnitId
from core.private_files import private_file
from persistence.database import POSITION_COLUMNS, Connection, Row
from persistence.migrations import Migration
from persistence.models import Position

_CAST = re.compile(r"::[a-z_]+(\[\])?")
_ANY = re.compile(r"= ANY\(\$(\d+)\)")
_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=1024)
def sqlite_spelling(sql: str) -> str:
    """A query in PostgreSQL's spelling as SQLite reads it: ``$n`` → ``?n``, ``= ANY($n)`` → ``IN`` over
    the JSON list, casts and row locks dropped (``BEGIN IMMEDIATE`` already locks), LEAST → min."""
    sql = _CAST.sub("", sql)
    sql = _ANY.sub(r"IN (SELECT value FROM json_each($\1))", sql)
    sql = sql.replace(" FOR UPDATE", "").replace("LEAST(", "min(").replace("GREATEST(", "max(")
    return _PLACEHOLDER.sub(r"?\1", sql)


def _param(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if any(isinstance(item, str) and "\x00" in item for item in value):
            # json_each cuts a text at a NUL ("a\x00b" would match "a"); PostgreSQL refuses one alike
            raise ValidationFailed("a text holds a NUL character, which cannot be stored")
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def translate(exc: sqlite3.IntegrityError) -> Exception:
    """A driver error as the error the port promises."""
    text = str(exc)
    if "UNIQUE" in text or "PRIMARY KEY" in text:
        return Conflict(f"already exists ({text.split(':', 1)[-1].strip()})")
    if "FOREIGN KEY" in text:
        return NotFound("a referenced record does not exist")
    return Conflict(f"constraint violated: {text}")


class _SqliteDialect:
    """What the connection and the database answer alike, without a statement."""

    dialect = "sqlite"

    def timestamp(self, value: datetime) -> Any:
        return value.timestamp()

    async def hold(self, *key: int) -> None:
        pass  # BEGIN IMMEDIATE holds the database's one write lock already

    def rows_table(
        self, first: int, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[Any]]:
        picks = ", ".join(f"value ->> {i} AS {name}" for i, (name, _) in enumerate(columns))
        return f"(SELECT {picks} FROM json_each(${first})) AS v", [[list(row) for row in rows]]


class SqliteConnection(_SqliteDialect):
    """The connection, held by the caller (inside a transaction, or for one statement)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @property
    def raw(self) -> aiosqlite.Connection:
        """The driver's connection, for what only SQLite does (``executescript``, ``executemany`` of rows)."""
        return self._db

    async def _cursor(self, sql: str, args: Sequence[Any]) -> aiosqlite.Cursor:
        try:
            return await self._db.execute(sqlite_spelling(sql), [_param(a) for a in args])
        except sqlite3.IntegrityError as exc:
            raise translate(exc) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = await self._cursor(sql, args)
        rows = await cursor.fetchall()
        await cursor.close()
        return list(rows)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)  # stepped to the end: an INSERT … RETURNING completes
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._cursor(sql, args)
        count = cursor.rowcount
        await cursor.close()
        return max(count, 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._db.executemany(sqlite_spelling(sql), [[_param(a) for a in row] for row in rows])
        except sqlite3.IntegrityError as exc:
            raise translate(exc) from exc


class SqliteDatabase(_SqliteDialect):
    """The file's one connection; each call holds it for one statement, ``transaction`` for a unit of work."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()

    @property
    def connection(self) -> SqliteConnection:
        if self._db is None:
            raise ServiceUnavailable("store is not open")
        return SqliteConnection(self._db)

    async def open(self) -> None:
        if self._path != ":memory:":
            # 0600 before SQLite first opens it: SQLite gives the -wal and -shm files the database's mode
            for path in (Path(self._path + suffix) for suffix in ("-wal", "-shm")):
                if path.exists():
                    private_file(path)
            private_file(Path(self._path))
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self.lock:
            return await self.connection.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self.lock:
            return await self.connection.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.lock:
            return await self.connection.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.lock:
            return await self.connection.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self, *, hold: tuple[int, ...] = (), reserved: bool = False) -> AsyncIterator[Connection]:
        """``hold`` is already held: one connection, and ``BEGIN IMMEDIATE`` takes the database's write lock;
        ``reserved`` too: there is no other connection to keep."""
        async with self.lock:
            conn = self.connection
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @asynccontextmanager
    async def autocommit(self, *, reserved: bool = False) -> AsyncIterator[Connection]:
        """The one connection, held meanwhile (``reserved``: there is no other to keep)."""
        async with self.lock:
            yield self.connection

    # dialect-specific units of work -------------------------------------------------------------------
    async def applied_migrations(self) -> list[int]:
        await self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        return [row[0] for row in await self.fetch("SELECT version FROM schema_migrations ORDER BY version")]

    async def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        applied = set(await self.applied_migrations())
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            # executescript commits first, so wrap the migration and its record in one transaction.
            script = (
                "BEGIN IMMEDIATE;\n"
                f"{migration.sql}\n;"
                f"INSERT INTO schema_migrations (version, name, applied_at) "
                f"VALUES ({migration.version}, '{migration.name}', {time.time()});\n"
                "COMMIT;"
            )
            async with self.lock:
                db = self.connection.raw
                try:
                    await db.executescript(script)
                except sqlite3.Error:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
            done.append(migration.version)
        return done

    async def version(self) -> str:
        return str(await self.fetchval("SELECT sqlite_version()"))

    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        """The batch goes in as one JSON parameter read by two statements, in one transaction: the new rows
        (``ON CONFLICT DO NOTHING RETURNING`` names them) and each unit's latest fix (an upsert that moves
        forward only, so the order of the batch does not matter)."""
        if not positions:
            return set()
        batch, args = self.rows_table(1, [(c, "") for c in POSITION_COLUMNS], [_row(p) for p in positions])
        async with self.transaction() as conn:
            fresh = await conn.fetch(
                f"INSERT INTO positions ({_COLUMNS}) SELECT {_COLUMNS} FROM {batch} WHERE true"
                " ON CONFLICT DO NOTHING RETURNING unit_id, seq",
                *args,
            )
            await conn.execute(_UPSERT_LATEST.format(batch=batch), *args)
        return {(UnitId(r[0]), r[1]) for r in fresh}


def _row(p: Position) -> tuple[Any, ...]:
    return (
        p.unit_id, p.seq, p.fix_time_ms, p.lat, p.lon, p.accuracy_m, p.speed_mps, p.heading_deg, p.altitude_m,
        p.battery_pct, int(p.sos), p.received_ms,
    )  # fmt: skip


_COLUMNS = ", ".join(POSITION_COLUMNS)
_UPSERT_LATEST = (
    f"INSERT INTO unit_latest ({_COLUMNS}) SELECT {_COLUMNS} FROM {{batch}} WHERE true "
    "ON CONFLICT (unit_id) DO UPDATE SET seq = excluded.seq, fix_time_ms = excluded.fix_time_ms, "
    "lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m, speed_mps = excluded.speed_mps, "
    "heading_deg = excluded.heading_deg, altitude_m = excluded.altitude_m, battery_pct = excluded.battery_pct, "
    "sos = excluded.sos, received_ms = excluded.received_ms "
    "WHERE (min(excluded.fix_time_ms, excluded.received_ms), excluded.seq) "
    "> (min(unit_latest.fix_time_ms, unit_latest.received_ms), unit_latest.seq)"
)  # a fix ahead of the server's clock counts as received now (field_units.tracker.live_key)
