"""The SQLite store: the embedded default for one server process and a first look.

Importing this module does not load asyncpg (``tests/test_store_written_once.py``).
"""

from __future__ import annotations

from pathlib import Path

from persistence.sql_store import SqlStore
from persistence.sqlite_database import SqliteDatabase


class SqliteStore(SqlStore):
    database: SqliteDatabase

    def __init__(self, path: str | Path) -> None:
        super().__init__(SqliteDatabase(path))
