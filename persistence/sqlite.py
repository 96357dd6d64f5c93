"""The SQLite store: the embedded default for one server process and a first look.

Every query is written once (``persistence.core_sql`` and the domain modules); ``SqliteDatabase`` is all
that is SQLite's own. Importing this module does not load asyncpg.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from persistence.alarms_sql import AlarmsSql
from persistence.core_sql import CoreSql
from persistence.duty_sql import DutySql
from persistence.gb_sql import GbSql
from persistence.geofences_sql import GeofencesSql
from persistence.operations_sql import OperationsSql
from persistence.query_guard_sql import QueryGuardSql
from persistence.sqlite_cases import SqliteCaseSource
from persistence.sqlite_database import SqliteDatabase
from persistence.sqlite_queries import SqliteQueries
from persistence.tasks_sql import TasksSql


class SqliteStore(
    SqliteQueries,
    AlarmsSql,
    TasksSql,
    DutySql,
    OperationsSql,
    GeofencesSql,
    SqliteCaseSource,
    QueryGuardSql,
    GbSql,
    CoreSql,
):
    database: SqliteDatabase

    def __init__(self, path: str | Path) -> None:
        self.database = SqliteDatabase(path)
        self._tx_lock = self.database.lock  # the one connection's holder, shared with the older mixins

    @property
    def db(self) -> aiosqlite.Connection:
        return self.database.connection.raw
