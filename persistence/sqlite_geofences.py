"""Geofences on SQLite (see ``geofence_port``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.errors import NotFound
from core.ids import CourtId
from persistence.geofence_models import StoredGeofence
from persistence.postgres_geofences import fence_from_row, fence_row


class SqliteGeofences:
    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def add_geofences(self, fences: Sequence[StoredGeofence]) -> None:
        async with self._tx() as db:
            await db.executemany(
                "INSERT INTO geofences (id, court_id, name, kind, alarm_on, geometry, radius_m, created_by, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [fence_row(f) for f in fences],
            )

    async def list_geofences(self, court_ids: Sequence[CourtId] | None = None) -> list[StoredGeofence]:
        if court_ids is None:
            rows = await self._q("SELECT * FROM geofences ORDER BY created_ms, id")
        else:
            marks = ", ".join("?" * len(court_ids)) or "NULL"
            rows = await self._q(f"SELECT * FROM geofences WHERE court_id IN ({marks}) ORDER BY created_ms, id",
                                 list(court_ids))  # fmt: skip
        return [fence_from_row(r) for r in rows]

    async def get_geofence(self, fence_id: str) -> StoredGeofence:
        rows = await self._q("SELECT * FROM geofences WHERE id = ?", (fence_id,))
        if not rows:
            raise NotFound(f"geofence {fence_id} does not exist")
        return fence_from_row(rows[0])

    async def delete_geofence(self, fence_id: str) -> None:
        if not await self._q("DELETE FROM geofences WHERE id = ? RETURNING id", (fence_id,)):
            raise NotFound(f"geofence {fence_id} does not exist")
