"""The PostgreSQL store: production storage, shared by every server process."""

from __future__ import annotations

from persistence.pg_database import PgDatabase
from persistence.sql_store import SqlStore


class PostgresStore(SqlStore):
    database: PgDatabase

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None, reserved: int = 2
    ) -> None:
        """``reserved``: pooled connections kept for the query broker's two grouped writers (attempts counted,
        outcomes recorded: ``transaction(reserved=True)``), one each."""
        super().__init__(PgDatabase(dsn, min_size=min_size, max_size=max_size, schema=schema, reserved=reserved))
