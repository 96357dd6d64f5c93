"""SQLite adapter (aiosqlite): the embedded default for one server process and a first look.

One connection in WAL mode, foreign keys on; aiosqlite runs each statement on its own thread so the event
loop never blocks on the file. Times are stored as REAL epoch seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import NotFound, ServiceUnavailable
from core.ids import CourtId, UnitId, UserId
from core.private_files import private_file
from persistence.migrations import load_migrations
from persistence.models import (
    Court,
    CourtLevel,
    Duty,
    Position,
    Role,
    Session,
    Unit,
    UnitKind,
    UnitState,
    User,
)
from persistence.sqlite_alarms import SqliteAlarms
from persistence.sqlite_cases import SqliteCaseSource
from persistence.sqlite_cross_court import SqliteCrossCourt
from persistence.sqlite_duty import SqliteDuty
from persistence.sqlite_gb import SqliteGb
from persistence.sqlite_geofences import SqliteGeofences
from persistence.sqlite_operations import SqliteOperations
from persistence.sqlite_queries import SqliteQueries, translate_integrity_error
from persistence.sqlite_query_guard import SqliteQueryGuard
from persistence.sqlite_tasks import SqliteTasks

_SUBTREE = """
WITH RECURSIVE tree(id, depth) AS (
    SELECT id, 0 FROM courts WHERE id = ?
    UNION ALL
    SELECT c.id, tree.depth + 1 FROM courts c JOIN tree ON c.parent_id = tree.id
)
SELECT id FROM tree ORDER BY depth, id
"""


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime) -> float:
    return value.timestamp()


class SqliteStore(
    SqliteQueries,
    SqliteAlarms,
    SqliteTasks,
    SqliteDuty,
    SqliteOperations,
    SqliteGeofences,
    SqliteCaseSource,
    SqliteQueryGuard,
    SqliteGb,
    SqliteCrossCourt,
):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise ServiceUnavailable("store is not open")
        return self._db

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

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        try:
            async with self._serial():
                return await self.db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise translate_integrity_error(exc) from exc

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        cursor = await self._execute(sql, params)
        row = await cursor.fetchone()
        await cursor.close()
        return row

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        cursor = await self._execute(sql, params)
        rows = await cursor.fetchall()
        await cursor.close()
        return list(rows)

    # migrations ---------------------------------------------------------------------------------------
    async def _ensure_migration_table(self) -> None:
        await self._execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )

    async def applied_migrations(self) -> list[int]:
        await self._ensure_migration_table()
        return [row[0] for row in await self._all("SELECT version FROM schema_migrations ORDER BY version")]

    async def migrate(self) -> list[int]:
        applied = set(await self.applied_migrations())
        done: list[int] = []
        for migration in load_migrations(self.dialect):
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
            try:
                await self.db.executescript(script)
            except sqlite3.Error:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise
            done.append(migration.version)
        return done

    async def health(self) -> dict[str, Any]:
        row = await self._one("SELECT sqlite_version()")
        assert row is not None
        return {"dialect": self.dialect, "version": row[0], "migrations": await self.applied_migrations()}

    # courts -------------------------------------------------------------------------------------------
    async def upsert_court(self, court: Court) -> None:
        await self._execute(
            "INSERT INTO courts (id, name, level, parent_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, level = excluded.level, "
            "parent_id = excluded.parent_id",
            (court.id, court.name, court.level.value, court.parent_id),
        )

    @staticmethod
    def _court(row: aiosqlite.Row) -> Court:
        return Court(CourtId(row["id"]), row["name"], CourtLevel(row["level"]), row["parent_id"])

    async def get_court(self, court_id: CourtId) -> Court:
        row = await self._one("SELECT * FROM courts WHERE id = ?", (court_id,))
        if row is None:
            raise NotFound(f"court {court_id} does not exist")
        return self._court(row)

    async def list_courts(self) -> list[Court]:
        return [self._court(r) for r in await self._all("SELECT * FROM courts ORDER BY id")]

    async def court_subtree(self, court_id: CourtId) -> list[CourtId]:
        return [CourtId(r[0]) for r in await self._all(_SUBTREE, (court_id,))]

    # users and sessions -------------------------------------------------------------------------------
    @staticmethod
    def _user(row: aiosqlite.Row) -> User:
        created = _ts(row["created_at"])
        assert created is not None
        return User(
            id=UserId(row["id"]),
            username=row["username"],
            display_name=row["display_name"],
            role=Role(row["role"]),
            court_id=CourtId(row["court_id"]),
            password_hash=row["password_hash"],
            disabled=bool(row["disabled"]),
            created_at=created,
        )

    async def add_user(
        self, *, username: str, display_name: str, password_hash: str, role: Role, court_id: CourtId
    ) -> User:
        cursor = await self._execute(
            "INSERT INTO users (username, display_name, password_hash, role, court_id) VALUES (?, ?, ?, ?, ?)",
            (username, display_name, password_hash, role.value, court_id),
        )
        user_id = cursor.lastrowid
        await cursor.close()
        assert user_id is not None
        return await self.get_user(UserId(user_id))

    async def get_user(self, user_id: UserId) -> User:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return self._user(row)

    async def find_user(self, username: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE username = ?", (username,))
        return None if row is None else self._user(row)

    async def list_users(self, court_ids: Sequence[CourtId] | None = None) -> list[User]:
        if court_ids is None:
            rows = await self._all("SELECT * FROM users ORDER BY id")
        else:
            marks = ",".join("?" * len(court_ids)) or "NULL"
            rows = await self._all(f"SELECT * FROM users WHERE court_id IN ({marks}) ORDER BY id", court_ids)
        return [self._user(r) for r in rows]

    async def count_users(self) -> int:
        row = await self._one("SELECT count(*) FROM users")
        assert row is not None
        return int(row[0])

    async def set_password(self, user_id: UserId, password_hash: str) -> None:
        cursor = await self._execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
        if cursor.rowcount == 0:
            raise NotFound(f"user {user_id} does not exist")

    async def set_user_disabled(self, user_id: UserId, disabled: bool) -> None:
        cursor = await self._execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
        if cursor.rowcount == 0:
            raise NotFound(f"user {user_id} does not exist")

    async def add_session(self, *, token_hash: str, user_id: UserId, expires_at: datetime) -> Session:
        now = time.time()
        await self._execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, user_id, now, _epoch(expires_at)),
        )
        return Session(token_hash, user_id, datetime.fromtimestamp(now, UTC), expires_at, None)

    async def find_session(self, token_hash: str) -> tuple[Session, User] | None:
        row = await self._one(
            "SELECT s.token_hash, s.created_at AS s_created, s.expires_at, s.revoked_at, u.* "
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        created, expires = _ts(row["s_created"]), _ts(row["expires_at"])
        assert created is not None and expires is not None
        session = Session(row["token_hash"], UserId(row["id"]), created, expires, _ts(row["revoked_at"]))
        return session, self._user(row)

    async def revoke_session(self, token_hash: str) -> bool:
        cursor = await self._execute(
            "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
            (time.time(), token_hash),
        )
        return cursor.rowcount > 0

    async def revoke_user_sessions(self, user_id: UserId) -> int:
        cursor = await self._execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (time.time(), user_id),
        )
        return cursor.rowcount

    # units --------------------------------------------------------------------------------------------
    @staticmethod
    def _unit(row: aiosqlite.Row) -> Unit:
        created = _ts(row["created_at"])
        assert created is not None
        return Unit(
            id=UnitId(row["id"]),
            name=row["name"],
            kind=UnitKind(row["kind"]),
            court_id=CourtId(row["court_id"]),
            revoked_at=_ts(row["revoked_at"]),
            created_at=created,
            offline_after_seconds=row["offline_after_seconds"],
        )

    async def add_unit(
        self,
        *,
        unit_id: UnitId,
        name: str,
        kind: UnitKind,
        court_id: CourtId,
        secret_hash: str,
        offline_after_seconds: float | None = None,
    ) -> Unit:
        await self._execute(
            "INSERT INTO units (id, name, kind, court_id, secret_hash, offline_after_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (unit_id, name, kind.value, court_id, secret_hash, offline_after_seconds),
        )
        return await self.get_unit(unit_id)

    async def get_unit(self, unit_id: UnitId) -> Unit:
        row = await self._one("SELECT * FROM units WHERE id = ?", (unit_id,))
        if row is None:
            raise NotFound(f"unit {unit_id} does not exist")
        return self._unit(row)

    async def find_unit_by_secret(self, secret_hash: str) -> Unit | None:
        row = await self._one("SELECT * FROM units WHERE secret_hash = ?", (secret_hash,))
        return None if row is None else self._unit(row)

    async def list_units(self, court_ids: Sequence[CourtId] | None = None) -> list[Unit]:
        if court_ids is None:
            rows = await self._all("SELECT * FROM units ORDER BY id")
        else:
            marks = ",".join("?" * len(court_ids)) or "NULL"
            rows = await self._all(f"SELECT * FROM units WHERE court_id IN ({marks}) ORDER BY id", court_ids)
        return [self._unit(r) for r in rows]

    async def revoke_unit(self, unit_id: UnitId) -> None:
        cursor = await self._execute(
            "UPDATE units SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (time.time(), unit_id)
        )
        if cursor.rowcount == 0:
            raise NotFound(f"unit {unit_id} does not exist")

    # telemetry ----------------------------------------------------------------------------------------
    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        if not positions:
            return set()
        keys = [(p.unit_id, p.seq) for p in positions]
        existing: set[tuple[UnitId, int]] = set()
        for start in range(0, len(keys), 400):  # 800 parameters: under SQLite's oldest limit of 999
            chunk = keys[start : start + 400]
            marks = ",".join("(?, ?)" for _ in chunk)
            rows = await self._all(
                f"SELECT unit_id, seq FROM positions WHERE (unit_id, seq) IN (VALUES {marks})",
                [value for key in chunk for value in key],
            )
            existing.update((UnitId(row[0]), row[1]) for row in rows)
        fresh = [p for p in positions if (p.unit_id, p.seq) not in existing]
        newest: dict[UnitId, Position] = {}
        for p in positions:
            best = newest.get(p.unit_id)
            if best is None or (p.fix_time_ms, p.seq) > (best.fix_time_ms, best.seq):
                newest[p.unit_id] = p
        async with self._tx() as db:
            await db.executemany(_INSERT_POSITION, [_position_row(p) for p in fresh])
            await db.executemany(_UPSERT_LATEST, [_position_row(p) for p in newest.values()])
        return {(p.unit_id, p.seq) for p in fresh}

    async def latest_positions(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, Position]:
        if unit_ids is None:
            rows = await self._all("SELECT * FROM unit_latest")
        else:
            marks = ",".join("?" * len(unit_ids)) or "NULL"
            rows = await self._all(f"SELECT * FROM unit_latest WHERE unit_id IN ({marks})", unit_ids)
        return {UnitId(r["unit_id"]): _position(r) for r in rows}

    async def track(self, unit_id: UnitId, *, since_ms: int, until_ms: int, limit: int = 10_000) -> list[Position]:
        rows = await self._all(
            "SELECT * FROM positions WHERE unit_id = ? AND fix_time_ms >= ? AND fix_time_ms < ? "
            "ORDER BY fix_time_ms, seq LIMIT ?",
            (unit_id, since_ms, until_ms, limit),
        )
        return [_position(r) for r in rows]

    async def count_positions(self, unit_id: UnitId) -> int:
        row = await self._one("SELECT count(*) FROM positions WHERE unit_id = ?", (unit_id,))
        assert row is not None
        return int(row[0])

    async def save_unit_state(self, unit_id: UnitId, state: UnitState) -> None:
        await self._execute(
            "INSERT INTO unit_state (unit_id, duty, sos, online, last_seen_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (unit_id) DO UPDATE SET duty = excluded.duty, sos = excluded.sos, "
            "online = excluded.online, last_seen_ms = excluded.last_seen_ms",
            (unit_id, state.duty.value, int(state.sos), int(state.online), state.last_seen_ms),
        )

    async def unit_states(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, UnitState]:
        if unit_ids is None:
            rows = await self._all("SELECT * FROM unit_state")
        else:
            marks = ",".join("?" * len(unit_ids)) or "NULL"
            rows = await self._all(f"SELECT * FROM unit_state WHERE unit_id IN ({marks})", unit_ids)
        return {
            UnitId(r["unit_id"]): UnitState(Duty(r["duty"]), bool(r["sos"]), bool(r["online"]), r["last_seen_ms"])
            for r in rows
        }


_COLUMNS = (
    "unit_id, seq, fix_time_ms, lat, lon, accuracy_m, speed_mps, heading_deg, altitude_m, battery_pct, sos, received_ms"
)
_INSERT_POSITION = f"INSERT OR IGNORE INTO positions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_LATEST = (
    f"INSERT INTO unit_latest ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (unit_id) DO UPDATE SET seq = excluded.seq, fix_time_ms = excluded.fix_time_ms, "
    "lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m, speed_mps = excluded.speed_mps, "
    "heading_deg = excluded.heading_deg, altitude_m = excluded.altitude_m, battery_pct = excluded.battery_pct, "
    "sos = excluded.sos, received_ms = excluded.received_ms "
    "WHERE (min(excluded.fix_time_ms, excluded.received_ms), excluded.seq) "
    "> (min(unit_latest.fix_time_ms, unit_latest.received_ms), unit_latest.seq)"
)  # a fix ahead of the server's clock counts as received now (field_units.tracker.live_key)


def _position_row(p: Position) -> tuple[Any, ...]:
    return (
        p.unit_id, p.seq, p.fix_time_ms, p.lat, p.lon, p.accuracy_m, p.speed_mps, p.heading_deg, p.altitude_m,
        p.battery_pct, int(p.sos), p.received_ms,
    )  # fmt: skip


def _position(row: aiosqlite.Row) -> Position:
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
