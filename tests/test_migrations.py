"""Both dialects declare the same migrations and, once applied, the same tables and columns."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from persistence.migrations import load_migrations
from persistence.postgres import PostgresStore
from persistence.sqlite import SqliteStore
from tests.conftest import POSTGRES_DSN


def test_dialects_have_the_same_numbered_migrations() -> None:
    sqlite = [(m.version, m.name) for m in load_migrations("sqlite")]
    postgres = [(m.version, m.name) for m in load_migrations("postgres")]
    assert sqlite == postgres
    assert sqlite[:3] == [(1, "courts_users_units"), (2, "positions_and_unit_state"), (3, "cases_queries_audit")]


@pytest.mark.postgres
async def test_migrated_schemas_match_across_dialects(tmp_path: Path, pg_schema: str) -> None:
    lite = SqliteStore(tmp_path / "s.db")
    await lite.open()
    await lite.migrate()
    rows = await lite.database.fetch("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    sqlite_columns = {}
    for row in rows:
        table = row[0]
        sqlite_columns[table] = sorted(r[1] for r in await lite.database.fetch(f"PRAGMA table_info({table})"))
    await lite.close()

    pg = PostgresStore(POSTGRES_DSN, schema=pg_schema)
    await pg.open()
    await pg.migrate()
    await pg.close()
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        records = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1",
            pg_schema,
        )
    finally:
        await conn.close()
    pg_columns: dict[str, list[str]] = {}
    for record in records:
        pg_columns.setdefault(record["table_name"], []).append(record["column_name"])
    assert {t: sorted(c) for t, c in pg_columns.items()} == sqlite_columns


def test_migration_010_keeps_every_alarm_and_never_reuses_an_id() -> None:
    """010 rebuilds SQLite's alarms table (to drop the CHECK on kinds): rows, indexes and AUTOINCREMENT's
    promise survive it."""
    import sqlite3

    db = sqlite3.connect(":memory:", isolation_level=None)
    migrations = load_migrations("sqlite")
    for migration in [m for m in migrations if m.version < 10]:
        db.executescript(migration.sql)
    db.execute("INSERT INTO courts (id, name, level, parent_id) VALUES ('C', 'c', 'high', NULL)")
    insert = (
        "INSERT INTO alarms (kind, subject, court_id, details, raised_ms, state, active)"
        " VALUES (?, ?, 'C', '{}', 1, 'open', 1)"
    )
    for subject in ("u1", "u2", "u3"):
        db.execute(insert, ("sos", subject))
    db.execute("DELETE FROM alarms WHERE subject = 'u3'")
    for migration in [m for m in migrations if m.version == 10]:
        db.executescript(f"BEGIN; {migration.sql}; COMMIT;")
    assert list(db.execute("SELECT id, kind, subject FROM alarms")) == [(1, "sos", "u1"), (2, "sos", "u2")]
    db.execute(insert, ("query_burst", "7"))
    assert list(db.execute("SELECT id FROM alarms WHERE kind = 'query_burst'")) == [(4,)]
    with pytest.raises(sqlite3.IntegrityError):  # still one live alarm per condition
        db.execute(insert, ("query_burst", "7"))


def test_migration_033_keeps_every_duty_note_and_takes_the_systems() -> None:
    """033 rebuilds SQLite's duty_notes (to let a note have no user: the system's): notes, their ids and
    AUTOINCREMENT's promise survive it, and a person's note still needs a real user."""
    import sqlite3

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    migrations = load_migrations("sqlite")
    for migration in [m for m in migrations if m.version < 33]:
        db.executescript(migration.sql)
    db.execute("INSERT INTO courts (id, name, level, parent_id) VALUES ('C', 'c', 'high', NULL)")
    db.execute("INSERT INTO users (username, password_hash, role, court_id, display_name, created_at)"
               " VALUES ('op', 'x', 'operator', 'C', 'op', '2026-01-01T00:00:00Z')")  # fmt: skip
    insert = "INSERT INTO duty_notes (court_id, at_ms, user_id, text) VALUES ('C', ?, ?, ?)"
    for at, text in ((1, "交班"), (2, "巡查"), (3, "删去")):
        db.execute(insert, (at, 1, text))
    db.execute("DELETE FROM duty_notes WHERE text = '删去'")
    with pytest.raises(sqlite3.IntegrityError):  # before 033 every note is a person's
        db.execute(insert, (4, None, "系统"))
    for migration in [m for m in migrations if m.version == 33]:
        db.executescript(f"BEGIN; {migration.sql}; COMMIT;")
    assert list(db.execute("SELECT id, user_id, text FROM duty_notes")) == [(1, 1, "交班"), (2, 1, "巡查")]
    db.execute(insert, (5, None, "执行委托已超期"))
    assert list(db.execute("SELECT id, user_id FROM duty_notes WHERE at_ms = 5")) == [(4, None)]
    with pytest.raises(sqlite3.IntegrityError):  # a person's note names a user that exists
        db.execute(insert, (6, 99, "无此人"))
    assert [r[1] for r in db.execute("PRAGMA index_list(duty_notes)")] == ["duty_notes_court_idx"]
