"""The storage geofences need; part of the ``Store`` port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.ids import CourtId
from persistence.geofence_models import StoredGeofence


class GeofenceStore(Protocol):
    async def add_geofences(self, fences: Sequence[StoredGeofence]) -> None:
        """All or none (one transaction)."""

    async def list_geofences(self, court_ids: Sequence[CourtId] | None = None) -> list[StoredGeofence]: ...

    async def get_geofence(self, fence_id: str) -> StoredGeofence: ...

    async def delete_geofence(self, fence_id: str) -> None:
        """NotFound when there is no such fence."""
