"""PostgreSQL adapter (asyncpg): production storage, shared by every server process.

A pool is opened once; each method borrows a connection for one unit of work. Migrations run under a
transaction-scoped advisory lock so several processes starting together apply each one exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from core.errors import Conflict, NotFound, ServiceUnavailable
from core.ids import CourtId, UnitId, UserId
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
from persistence.postgres_alarms import PostgresAlarms
from persistence.postgres_cases import PostgresCaseSource
from persistence.postgres_cross_court import PostgresCrossCourt
from persistence.postgres_duty import PostgresDuty
from persistence.postgres_gb import PostgresGb
from persistence.postgres_geofences import PostgresGeofences
from persistence.postgres_operations import PostgresOperations
from persistence.postgres_queries import PostgresQueries
from persistence.postgres_query_guard import PostgresQueryGuard
from persistence.postgres_tasks import PostgresTasks

_MIGRATION_LOCK = 0x43435F4D  # "CC_M": advisory lock key serialising migrations across processes

_SUBTREE = """
WITH RECURSIVE tree(id, depth) AS (
    SELECT id, 0 FROM courts WHERE id = $1
    UNION ALL
    SELECT c.id, tree.depth + 1 FROM courts c JOIN tree ON c.parent_id = tree.id
)
SELECT id FROM tree ORDER BY depth, id
"""


def _translate(exc: asyncpg.PostgresError) -> Exception:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(f"already exists ({exc.constraint_name})")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("a referenced record does not exist")
    if isinstance(exc, asyncpg.CheckViolationError):
        return Conflict(f"constraint violated ({exc.constraint_name})")
    return exc


class PostgresStore(
    PostgresQueries,
    PostgresAlarms,
    PostgresTasks,
    PostgresDuty,
    PostgresOperations,
    PostgresGeofences,
    PostgresCaseSource,
    PostgresQueryGuard,
    PostgresGb,
    PostgresCrossCourt,
):
    dialect = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._schema = schema
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ServiceUnavailable("store is not open")
        return self._pool

    async def open(self) -> None:
        settings = {"search_path": self._schema} if self._schema else None
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self._min_size, max_size=self._max_size, server_settings=settings
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _execute(self, sql: str, *args: Any) -> str:
        try:
            return str(await self.pool.execute(sql, *args))
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from exc

    async def _one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from exc

    async def _all(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from exc

    @staticmethod
    def _count(status: str) -> int:
        """Rows touched, from a command tag such as ``UPDATE 3``."""
        return int(status.rsplit(" ", 1)[-1])

    # migrations ---------------------------------------------------------------------------------------
    async def applied_migrations(self) -> list[int]:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]

    async def migrate(self) -> list[int]:
        done: list[int] = []
        await self.applied_migrations()
        async with self.pool.acquire() as conn:
            for migration in load_migrations(self.dialect):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    already = await conn.fetchval(
                        "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
                    )
                    if already:
                        continue
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                    done.append(migration.version)
        return done

    async def health(self) -> dict[str, Any]:
        version = await self.pool.fetchval("SHOW server_version")
        return {"dialect": self.dialect, "version": version, "migrations": await self.applied_migrations()}

    # courts -------------------------------------------------------------------------------------------
    async def upsert_court(self, court: Court) -> None:
        await self._execute(
            "INSERT INTO courts (id, name, level, parent_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, level = excluded.level, "
            "parent_id = excluded.parent_id",
            court.id,
            court.name,
            court.level.value,
            court.parent_id,
        )

    @staticmethod
    def _court(row: asyncpg.Record) -> Court:
        return Court(CourtId(row["id"]), row["name"], CourtLevel(row["level"]), row["parent_id"])

    async def get_court(self, court_id: CourtId) -> Court:
        row = await self._one("SELECT * FROM courts WHERE id = $1", court_id)
        if row is None:
            raise NotFound(f"court {court_id} does not exist")
        return self._court(row)

    async def list_courts(self) -> list[Court]:
        return [self._court(r) for r in await self._all("SELECT * FROM courts ORDER BY id")]

    async def court_subtree(self, court_id: CourtId) -> list[CourtId]:
        return [CourtId(r[0]) for r in await self._all(_SUBTREE, court_id)]

    # users and sessions -------------------------------------------------------------------------------
    @staticmethod
    def _user(row: asyncpg.Record) -> User:
        return User(
            id=UserId(row["id"]),
            username=row["username"],
            display_name=row["display_name"],
            role=Role(row["role"]),
            court_id=CourtId(row["court_id"]),
            password_hash=row["password_hash"],
            disabled=row["disabled"],
            created_at=row["created_at"],
        )

    async def add_user(
        self, *, username: str, display_name: str, password_hash: str, role: Role, court_id: CourtId
    ) -> User:
        row = await self._one(
            "INSERT INTO users (username, display_name, password_hash, role, court_id) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING *",
            username,
            display_name,
            password_hash,
            role.value,
            court_id,
        )
        assert row is not None
        return self._user(row)

    async def get_user(self, user_id: UserId) -> User:
        row = await self._one("SELECT * FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return self._user(row)

    async def find_user(self, username: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE username = $1", username)
        return None if row is None else self._user(row)

    async def list_users(self, court_ids: Sequence[CourtId] | None = None) -> list[User]:
        if court_ids is None:
            rows = await self._all("SELECT * FROM users ORDER BY id")
        else:
            rows = await self._all("SELECT * FROM users WHERE court_id = ANY($1) ORDER BY id", list(court_ids))
        return [self._user(r) for r in rows]

    async def count_users(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM users"))

    async def set_password(self, user_id: UserId, password_hash: str) -> None:
        status = await self._execute("UPDATE users SET password_hash = $1 WHERE id = $2", password_hash, user_id)
        if self._count(status) == 0:
            raise NotFound(f"user {user_id} does not exist")

    async def set_user_disabled(self, user_id: UserId, disabled: bool) -> None:
        status = await self._execute("UPDATE users SET disabled = $1 WHERE id = $2", disabled, user_id)
        if self._count(status) == 0:
            raise NotFound(f"user {user_id} does not exist")

    async def add_session(self, *, token_hash: str, user_id: UserId, expires_at: datetime) -> Session:
        row = await self._one(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3) RETURNING created_at",
            token_hash,
            user_id,
            expires_at,
        )
        assert row is not None
        return Session(token_hash, user_id, row["created_at"], expires_at, None)

    async def find_session(self, token_hash: str) -> tuple[Session, User] | None:
        row = await self._one(
            "SELECT s.token_hash, s.created_at AS s_created, s.expires_at, s.revoked_at, u.* "
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            token_hash,
        )
        if row is None:
            return None
        session = Session(row["token_hash"], UserId(row["id"]), row["s_created"], row["expires_at"], row["revoked_at"])
        return session, self._user(row)

    async def revoke_session(self, token_hash: str) -> bool:
        status = await self._execute(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL", token_hash
        )
        return self._count(status) > 0

    async def revoke_user_sessions(self, user_id: UserId) -> int:
        status = await self._execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
        )
        return self._count(status)

    # units --------------------------------------------------------------------------------------------
    @staticmethod
    def _unit(row: asyncpg.Record) -> Unit:
        return Unit(
            id=UnitId(row["id"]),
            name=row["name"],
            kind=UnitKind(row["kind"]),
            court_id=CourtId(row["court_id"]),
            revoked_at=row["revoked_at"],
            created_at=row["created_at"],
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
        row = await self._one(
            "INSERT INTO units (id, name, kind, court_id, secret_hash, offline_after_seconds) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            unit_id,
            name,
            kind.value,
            court_id,
            secret_hash,
            offline_after_seconds,
        )
        assert row is not None
        return self._unit(row)

    async def get_unit(self, unit_id: UnitId) -> Unit:
        row = await self._one("SELECT * FROM units WHERE id = $1", unit_id)
        if row is None:
            raise NotFound(f"unit {unit_id} does not exist")
        return self._unit(row)

    async def find_unit_by_secret(self, secret_hash: str) -> Unit | None:
        row = await self._one("SELECT * FROM units WHERE secret_hash = $1", secret_hash)
        return None if row is None else self._unit(row)

    async def list_units(self, court_ids: Sequence[CourtId] | None = None) -> list[Unit]:
        if court_ids is None:
            rows = await self._all("SELECT * FROM units ORDER BY id")
        else:
            rows = await self._all("SELECT * FROM units WHERE court_id = ANY($1) ORDER BY id", list(court_ids))
        return [self._unit(r) for r in rows]

    async def revoke_unit(self, unit_id: UnitId) -> None:
        status = await self._execute("UPDATE units SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", unit_id)
        if self._count(status) == 0:
            raise NotFound(f"unit {unit_id} does not exist")

    # telemetry ----------------------------------------------------------------------------------------
    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        """COPY the batch into a session-local staging table, then move the new rows across.

        COPY is the fast path for bulk rows but cannot skip duplicates, so the staging table takes the
        batch and ``INSERT … ON CONFLICT DO NOTHING RETURNING`` tells which (unit, seq) were new.
        """
        if not positions:
            return set()
        rows = [_position_row(p) for p in positions]
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS positions_in (LIKE positions INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS"
                )
                await conn.copy_records_to_table("positions_in", records=rows, columns=_COLUMN_NAMES)
                inserted = await conn.fetch(
                    f"INSERT INTO positions ({_COLUMNS}) SELECT DISTINCT ON (unit_id, seq) {_COLUMNS} "
                    "FROM positions_in ORDER BY unit_id, seq ON CONFLICT DO NOTHING RETURNING unit_id, seq"
                )
                await conn.execute(_UPSERT_LATEST)
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from exc
        return {(UnitId(r["unit_id"]), r["seq"]) for r in inserted}

    async def latest_positions(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, Position]:
        if unit_ids is None:
            rows = await self._all("SELECT * FROM unit_latest")
        else:
            rows = await self._all("SELECT * FROM unit_latest WHERE unit_id = ANY($1)", list(unit_ids))
        return {UnitId(r["unit_id"]): _position(r) for r in rows}

    async def track(self, unit_id: UnitId, *, since_ms: int, until_ms: int, limit: int = 10_000) -> list[Position]:
        rows = await self._all(
            "SELECT * FROM positions WHERE unit_id = $1 AND fix_time_ms >= $2 AND fix_time_ms < $3 "
            "ORDER BY fix_time_ms, seq LIMIT $4",
            unit_id,
            since_ms,
            until_ms,
            limit,
        )
        return [_position(r) for r in rows]

    async def count_positions(self, unit_id: UnitId) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM positions WHERE unit_id = $1", unit_id))

    async def save_unit_state(self, unit_id: UnitId, state: UnitState) -> None:
        await self._execute(
            "INSERT INTO unit_state (unit_id, duty, sos, online, last_seen_ms) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (unit_id) DO UPDATE SET duty = excluded.duty, sos = excluded.sos, "
            "online = excluded.online, last_seen_ms = excluded.last_seen_ms",
            unit_id,
            state.duty.value,
            state.sos,
            state.online,
            state.last_seen_ms,
        )

    async def unit_states(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, UnitState]:
        if unit_ids is None:
            rows = await self._all("SELECT * FROM unit_state")
        else:
            rows = await self._all("SELECT * FROM unit_state WHERE unit_id = ANY($1)", list(unit_ids))
        return {
            UnitId(r["unit_id"]): UnitState(Duty(r["duty"]), r["sos"], r["online"], r["last_seen_ms"]) for r in rows
        }


_COLUMN_NAMES = [
    "unit_id", "seq", "fix_time_ms", "lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m",
    "battery_pct", "sos", "received_ms",
]  # fmt: skip
_COLUMNS = ", ".join(_COLUMN_NAMES)
_UPSERT_LATEST = f"""
INSERT INTO unit_latest ({_COLUMNS})
SELECT DISTINCT ON (unit_id) {_COLUMNS} FROM positions_in
ORDER BY unit_id, LEAST(fix_time_ms, received_ms) DESC, seq DESC
ON CONFLICT (unit_id) DO UPDATE SET seq = excluded.seq, fix_time_ms = excluded.fix_time_ms, lat = excluded.lat,
    lon = excluded.lon, accuracy_m = excluded.accuracy_m, speed_mps = excluded.speed_mps,
    heading_deg = excluded.heading_deg, altitude_m = excluded.altitude_m, battery_pct = excluded.battery_pct,
    sos = excluded.sos, received_ms = excluded.received_ms
WHERE (LEAST(excluded.fix_time_ms, excluded.received_ms), excluded.seq)
    > (LEAST(unit_latest.fix_time_ms, unit_latest.received_ms), unit_latest.seq)
"""  # a fix ahead of the server's clock counts as received now (field_units.tracker.live_key)


def _position_row(p: Position) -> tuple[Any, ...]:
    return (
        p.unit_id, p.seq, p.fix_time_ms, p.lat, p.lon, p.accuracy_m, p.speed_mps, p.heading_deg, p.altitude_m,
        p.battery_pct, p.sos, p.received_ms,
    )  # fmt: skip


def _position(row: asyncpg.Record) -> Position:
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
        sos=row["sos"],
        received_ms=row["received_ms"],
    )
