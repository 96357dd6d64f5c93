"""The PostgreSQL store: production storage, shared by every server process.

Every query is written once (``persistence.core_sql`` and the domain modules); ``PgDatabase`` is all that
is PostgreSQL's own (the pool, COPY for telemetry, advisory locks, error mapping).
"""

from __future__ import annotations

import asyncpg

from persistence.alarms_sql import AlarmsSql
from persistence.core_sql import CoreSql
from persistence.duty_sql import DutySql
from persistence.gb_sql import GbSql
from persistence.geofences_sql import GeofencesSql
from persistence.operations_sql import OperationsSql
from persistence.pg_database import PgDatabase
from persistence.postgres_cases import PostgresCaseSource
from persistence.postgres_queries import PostgresQueries
from persistence.query_guard_sql import QueryGuardSql
from persistence.tasks_sql import TasksSql


class PostgresStore(
    PostgresQueries,
    AlarmsSql,
    TasksSql,
    DutySql,
    OperationsSql,
    GeofencesSql,
    PostgresCaseSource,
    QueryGuardSql,
    GbSql,
    CoreSql,
):
    database: PgDatabase

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None) -> None:
        self.database = PgDatabase(dsn, min_size=min_size, max_size=max_size, schema=schema)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.database.pool
