"""The store: every query of every domain, written once, over one ``persistence.database.Database``.

Which database is the only difference between ``SqliteStore`` and ``PostgresStore``; the domain mixins
(one module a domain, ``*_sql.py``) hold the SQL, ``sqlite_database`` / ``pg_database`` the dialects.
"""

from __future__ import annotations

from core.group_commit import GroupCommit
from persistence.alarms_sql import AlarmsSql
from persistence.cases_sql import CaseSourceSql
from persistence.cluster_sql import ClusterSql
from persistence.core_sql import CoreSql
from persistence.cross_court_sql import CrossCourtSql
from persistence.database import Database
from persistence.duty_sql import DutySql
from persistence.gb_sql import GbSql
from persistence.geofences_sql import GeofencesSql
from persistence.operations_sql import OperationsSql
from persistence.queries_sql import AuditWrite, QueriesSql
from persistence.query_guard_sql import QueryGuardSql
from persistence.query_models import AuditEntry
from persistence.rooms_sql import RoomsSql
from persistence.tasks_sql import TasksSql


class SqlStore(
    QueriesSql,
    AlarmsSql,
    TasksSql,
    DutySql,
    OperationsSql,
    GeofencesSql,
    CaseSourceSql,
    QueryGuardSql,
    GbSql,
    CrossCourtSql,
    RoomsSql,
    ClusterSql,
    CoreSql,
):
    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit_writes = GroupCommit[AuditWrite, AuditEntry | Exception](self._write_audit_group)

    async def close(self) -> None:
        """Audit writes already queued are committed (or fail) before the database closes."""
        await self.audit_writes.close()
        await super().close()
