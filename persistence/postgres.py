"""The PostgreSQL store: production storage, shared by every server process.

Every query is written once (``persistence.core_sql`` and the domain modules); ``PgDatabase`` is all that
is PostgreSQL's own (the pool, COPY for telemetry, advisory locks, error mapping).
"""

from __future__ import annotations

import asyncpg

from persistence.core_sql import CoreSql
from persistence.gb_sql import GbSql
from persistence.geofences_sql import GeofencesSql
from persistence.pg_database import PgDatabase
from persistence.postgres_alarms import PostgresAlarms
from persistence.postgres_cases import PostgresCaseSource
from persistence.postgres_duty import PostgresDuty
from persistence.postgres_operations import PostgresOperations
from persistence.postgres_queries import PostgresQueries
from persistence.postgres_query_guard import PostgresQueryGuard
from persistence.tasks_sql import TasksSql


class PostgresStore(
    PostgresQueries,
    PostgresAlarms,
    TasksSql,
    PostgresDuty,
    PostgresOperations,
    GeofencesSql,
    PostgresCaseSource,
    PostgresQueryGuard,
    GbSql,
    CoreSql,
):
    database: PgDatabase

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None) -> None:
        self.database = PgDatabase(dsn, min_size=min_size, max_size=max_size, schema=schema)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.database.pool
