"""Courts, users, sessions, units and telemetry, written once for both databases (``persistence.database``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.database import Database, Row, instant, instant_required, position_from_row
from persistence.migrations import load_migrations
from persistence.models import Court, CourtLevel, Duty, Position, Role, Session, Unit, UnitKind, UnitState, User

_SUBTREE = """
WITH RECURSIVE tree(id, depth) AS (
    SELECT id, 0 FROM courts WHERE id = $1
    UNION ALL
    SELECT c.id, tree.depth + 1 FROM courts c JOIN tree ON c.parent_id = tree.id
)
SELECT id FROM tree ORDER BY depth, id
"""


def court_from_row(row: Row) -> Court:
    return Court(CourtId(row["id"]), row["name"], CourtLevel(row["level"]), row["parent_id"])


def user_from_row(row: Row) -> User:
    return User(
        id=UserId(row["id"]),
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        court_id=CourtId(row["court_id"]),
        password_hash=row["password_hash"],
        disabled=bool(row["disabled"]),
        created_at=instant_required(row["created_at"]),
    )


def unit_from_row(row: Row) -> Unit:
    return Unit(
        id=UnitId(row["id"]),
        name=row["name"],
        kind=UnitKind(row["kind"]),
        court_id=CourtId(row["court_id"]),
        revoked_at=instant(row["revoked_at"]),
        created_at=instant_required(row["created_at"]),
        offline_after_seconds=row["offline_after_seconds"],
    )


def _now() -> datetime:
    return datetime.now(UTC)


class CoreSql:
    """The store's own tables; the domain mixins add theirs. ``database`` is the one dialect seam."""

    if TYPE_CHECKING:
        database: Database

    @property
    def dialect(self) -> str:
        return self.database.dialect

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    async def applied_migrations(self) -> list[int]:
        return await self.database.applied_migrations()

    async def migrate(self) -> list[int]:
        return await self.database.migrate(load_migrations(self.dialect))

    async def health(self) -> dict[str, Any]:
        version = await self.database.version()
        return {"dialect": self.dialect, "version": version, "migrations": await self.applied_migrations()}

    # courts -------------------------------------------------------------------------------------------
    async def upsert_court(self, court: Court) -> None:
        await self.database.execute(
            "INSERT INTO courts (id, name, level, parent_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, level = excluded.level, "
            "parent_id = excluded.parent_id",
            court.id, court.name, court.level.value, court.parent_id,
        )  # fmt: skip

    async def get_court(self, court_id: CourtId) -> Court:
        row = await self.database.fetchrow("SELECT * FROM courts WHERE id = $1", court_id)
        if row is None:
            raise NotFound(f"court {court_id} does not exist")
        return court_from_row(row)

    async def list_courts(self) -> list[Court]:
        return [court_from_row(r) for r in await self.database.fetch("SELECT * FROM courts ORDER BY id")]

    async def court_subtree(self, court_id: CourtId) -> list[CourtId]:
        return [CourtId(r[0]) for r in await self.database.fetch(_SUBTREE, court_id)]

    # users and sessions -------------------------------------------------------------------------------
    async def add_user(
        self, *, username: str, display_name: str, password_hash: str, role: Role, court_id: CourtId
    ) -> User:
        row = await self.database.fetchrow(
            "INSERT INTO users (username, display_name, password_hash, role, court_id) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING *",
            username, display_name, password_hash, role.value, court_id,
        )  # fmt: skip
        assert row is not None
        return user_from_row(row)

    async def get_user(self, user_id: UserId) -> User:
        row = await self.database.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return user_from_row(row)

    async def find_user(self, username: str) -> User | None:
        row = await self.database.fetchrow("SELECT * FROM users WHERE username = $1", username)
        return None if row is None else user_from_row(row)

    async def list_users(self, court_ids: Sequence[CourtId] | None = None) -> list[User]:
        rows = await self.database.fetch(
            "SELECT * FROM users WHERE $1::text[] IS NULL OR court_id = ANY($1) ORDER BY id",
            None if court_ids is None else list(court_ids),
        )
        return [user_from_row(r) for r in rows]

    async def count_users(self) -> int:
        return int(await self.database.fetchval("SELECT count(*) FROM users"))

    async def set_password(self, user_id: UserId, password_hash: str) -> None:
        if not await self.database.execute("UPDATE users SET password_hash = $1 WHERE id = $2", password_hash, user_id):
            raise NotFound(f"user {user_id} does not exist")

    async def set_user_disabled(self, user_id: UserId, disabled: bool) -> None:
        if not await self.database.execute("UPDATE users SET disabled = $1 WHERE id = $2", disabled, user_id):
            raise NotFound(f"user {user_id} does not exist")

    async def add_session(self, *, token_hash: str, user_id: UserId, expires_at: datetime) -> Session:
        now = _now()
        await self.database.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            token_hash, user_id, self.database.timestamp(now), self.database.timestamp(expires_at),
        )  # fmt: skip
        return Session(token_hash, user_id, now, expires_at, None)

    async def find_session(self, token_hash: str) -> tuple[Session, User] | None:
        row = await self.database.fetchrow(
            "SELECT s.token_hash, s.created_at AS s_created, s.expires_at, s.revoked_at, u.* "
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            token_hash,
        )
        if row is None:
            return None
        session = Session(
            row["token_hash"],
            UserId(row["id"]),
            instant_required(row["s_created"]),
            instant_required(row["expires_at"]),
            instant(row["revoked_at"]),
        )
        return session, user_from_row(row)

    async def revoke_session(self, token_hash: str) -> bool:
        revoked = await self.database.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            self.database.timestamp(_now()), token_hash,
        )  # fmt: skip
        return revoked > 0

    async def revoke_user_sessions(self, user_id: UserId) -> int:
        return await self.database.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            self.database.timestamp(_now()), user_id,
        )  # fmt: skip

    # units --------------------------------------------------------------------------------------------
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
        row = await self.database.fetchrow(
            "INSERT INTO units (id, name, kind, court_id, secret_hash, offline_after_seconds) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            unit_id, name, kind.value, court_id, secret_hash, offline_after_seconds,
        )  # fmt: skip
        assert row is not None
        return unit_from_row(row)

    async def get_unit(self, unit_id: UnitId) -> Unit:
        row = await self.database.fetchrow("SELECT * FROM units WHERE id = $1", unit_id)
        if row is None:
            raise NotFound(f"unit {unit_id} does not exist")
        return unit_from_row(row)

    async def find_unit_by_secret(self, secret_hash: str) -> Unit | None:
        row = await self.database.fetchrow("SELECT * FROM units WHERE secret_hash = $1", secret_hash)
        return None if row is None else unit_from_row(row)

    async def list_units(self, court_ids: Sequence[CourtId] | None = None) -> list[Unit]:
        rows = await self.database.fetch(
            "SELECT * FROM units WHERE $1::text[] IS NULL OR court_id = ANY($1) ORDER BY id",
            None if court_ids is None else list(court_ids),
        )
        return [unit_from_row(r) for r in rows]

    async def revoked_unit_ids(self) -> set[UnitId]:
        """The units whose credential was revoked: what a recheck of the open sockets looks for, without loading
        every unit (10,000 of them made into objects took the event loop for a long moment every recheck)."""
        rows = await self.database.fetch("SELECT id FROM units WHERE revoked_at IS NOT NULL")
        return {UnitId(r["id"]) for r in rows}

    async def revoke_unit(self, unit_id: UnitId) -> None:
        touched = await self.database.execute(
            "UPDATE units SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2",
            self.database.timestamp(_now()), unit_id,
        )  # fmt: skip
        if not touched:
            raise NotFound(f"unit {unit_id} does not exist")

    # telemetry ----------------------------------------------------------------------------------------
    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        return await self.database.insert_positions(positions)

    async def latest_positions(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, Position]:
        rows = await self.database.fetch(
            "SELECT * FROM unit_latest WHERE $1::text[] IS NULL OR unit_id = ANY($1)",
            None if unit_ids is None else list(unit_ids),
        )
        return {UnitId(r["unit_id"]): position_from_row(r) for r in rows}

    async def track(self, unit_id: UnitId, *, since_ms: int, until_ms: int, limit: int = 10_000) -> list[Position]:
        rows = await self.database.fetch(
            "SELECT * FROM positions WHERE unit_id = $1 AND fix_time_ms >= $2 AND fix_time_ms < $3 "
            "ORDER BY fix_time_ms, seq LIMIT $4",
            unit_id, since_ms, until_ms, limit,
        )  # fmt: skip
        return [position_from_row(r) for r in rows]

    async def count_positions(self, unit_id: UnitId) -> int:
        return int(await self.database.fetchval("SELECT count(*) FROM positions WHERE unit_id = $1", unit_id))

    async def save_unit_state(self, unit_id: UnitId, state: UnitState) -> None:
        await self.database.execute(
            "INSERT INTO unit_state (unit_id, duty, sos, online, last_seen_ms) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (unit_id) DO UPDATE SET duty = excluded.duty, sos = excluded.sos, "
            "online = excluded.online, last_seen_ms = excluded.last_seen_ms",
            unit_id, state.duty.value, state.sos, state.online, state.last_seen_ms,
        )  # fmt: skip

    async def unit_states(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, UnitState]:
        rows = await self.database.fetch(
            "SELECT * FROM unit_state WHERE $1::text[] IS NULL OR unit_id = ANY($1)",
            None if unit_ids is None else list(unit_ids),
        )
        return {
            UnitId(r["unit_id"]): UnitState(Duty(r["duty"]), bool(r["sos"]), bool(r["online"]), r["last_seen_ms"])
            for r in rows
        }
