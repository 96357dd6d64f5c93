"""The persistence ports: what the rest of the system may ask of storage, one narrow port a concern.

Adapters raise ``core.errors.NotFound`` / ``Conflict`` for missing references and duplicates, so callers
never see a driver exception. Every method is one unit of work: no connection outlives a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from alarms.port import AlarmStore
from consultations.port import RoomStore
from core.ids import CourtId, UnitId, UserId
from entrustments.port import EntrustmentStore
from operations.port import OperationCourtStore, OperationStore
from persistence.case_port import CaseSourceStore
from persistence.duty_port import DutyStore
from persistence.gb_port import GbStore
from persistence.geofence_port import GeofenceStore
from persistence.models import Court, Position, Role, Session, Unit, UnitKind, UnitState, User
from persistence.query_guard_port import QueryGuardStore
from persistence.query_port import QueryStore
from tasks.port import TaskStore


class CourtStore(Protocol):
    """The court tree (上下一体: a court sees the courts below it)."""

    # courts -------------------------------------------------------------------------------------------
    async def upsert_court(self, court: Court) -> None: ...

    async def get_court(self, court_id: CourtId) -> Court: ...

    async def list_courts(self) -> list[Court]: ...

    async def court_subtree(self, court_id: CourtId) -> list[CourtId]:
        """The court and every court below it (上下一体), the court itself first."""


class UserStore(Protocol):
    """People who log in, and their sessions."""

    # users and sessions -------------------------------------------------------------------------------
    async def add_user(
        self, *, username: str, display_name: str, password_hash: str, role: Role, court_id: CourtId
    ) -> User: ...

    async def get_user(self, user_id: UserId) -> User: ...

    async def find_user(self, username: str) -> User | None: ...

    async def list_users(self, court_ids: Sequence[CourtId] | None = None) -> list[User]: ...

    async def count_users(self) -> int: ...

    async def set_password(self, user_id: UserId, password_hash: str) -> None: ...

    async def set_user_disabled(self, user_id: UserId, disabled: bool) -> None:
        """Disable (or enable again) a user; a disabled user's sessions stop authenticating. NotFound if none."""

    async def add_session(self, *, token_hash: str, user_id: UserId, expires_at: datetime) -> Session: ...

    async def find_session(self, token_hash: str) -> tuple[Session, User] | None: ...

    async def revoke_session(self, token_hash: str) -> bool:
        """Mark one session revoked; False when it did not exist or was already revoked."""

    async def revoke_user_sessions(self, user_id: UserId) -> int: ...


class UnitStore(Protocol):
    """Field units (devices) and their secrets."""

    # units (devices) ----------------------------------------------------------------------------------
    async def add_unit(
        self,
        *,
        unit_id: UnitId,
        name: str,
        kind: UnitKind,
        court_id: CourtId,
        secret_hash: str,
        offline_after_seconds: float | None = None,
    ) -> Unit: ...

    async def get_unit(self, unit_id: UnitId) -> Unit: ...

    async def find_unit_by_secret(self, secret_hash: str) -> Unit | None: ...

    async def list_units(self, court_ids: Sequence[CourtId] | None = None) -> list[Unit]: ...

    async def revoked_unit_ids(self) -> set[UnitId]: ...

    async def revoke_unit(self, unit_id: UnitId) -> None: ...


class TelemetryStore(Protocol):
    """Positions (the hot path, written in batches) and each unit's last known state."""

    # telemetry ----------------------------------------------------------------------------------------
    async def insert_positions(self, positions: Sequence[Position]) -> set[tuple[UnitId, int]]:
        """Store a batch in one transaction; return the (unit, seq) keys that were new (the rest were
        duplicates). Each unit's latest position moves forward when the batch holds a newer fix."""

    async def latest_positions(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, Position]: ...

    async def track(self, unit_id: UnitId, *, since_ms: int, until_ms: int, limit: int = 10_000) -> list[Position]:
        """Positions of one unit with since_ms <= fix time < until_ms, oldest first."""

    async def count_positions(self, unit_id: UnitId) -> int: ...

    async def save_unit_state(self, unit_id: UnitId, state: UnitState) -> None: ...

    async def unit_states(self, unit_ids: Sequence[UnitId] | None = None) -> dict[UnitId, UnitState]: ...


class ClusterStore(Protocol):
    """What the server processes of one deployment share through the database."""

    async def cluster_secret(self) -> str:
        """The secret signing a request one process forwards to another; generated once, on first use."""
        ...


class Store(
    CourtStore,
    UserStore,
    UnitStore,
    TelemetryStore,
    QueryStore,
    AlarmStore,
    TaskStore,
    DutyStore,
    OperationStore,
    GeofenceStore,
    CaseSourceStore,
    QueryGuardStore,
    GbStore,
    OperationCourtStore,
    EntrustmentStore,
    RoomStore,
    ClusterStore,
    Protocol,
):
    """Everything, for the composition root and the tools that touch every table (bootstrap, the CLI, the
    demo); a consumer depends on the narrow port (or the few) it uses."""

    @property
    def dialect(self) -> str:
        """``postgres`` or ``sqlite``."""

    async def open(self) -> None:
        """Connect (pool or file)."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def migrate(self) -> list[int]:
        """Apply pending numbered migrations in order; return the versions applied now."""

    async def applied_migrations(self) -> list[int]: ...

    async def health(self) -> dict[str, Any]:
        """Round-trip to the database; raises when it is unreachable."""
