"""Geofences (``persistence.geofence_port``), written once for both databases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import Conflict, NotFound
from core.ids import CourtId, UserId
from persistence.database import Database, Row
from persistence.geofence_models import AlarmOn, StoredGeofence


def fence_from_row(r: Row) -> StoredGeofence:
    return StoredGeofence(r["id"], CourtId(r["court_id"]), r["name"], r["kind"], AlarmOn(r["alarm_on"]),
                          json.loads(r["geometry"]), r["radius_m"], UserId(r["created_by"]),
                          r["created_ms"])  # fmt: skip


def fence_row(f: StoredGeofence) -> tuple[Any, ...]:
    return (f.id, f.court_id, f.name, f.kind, f.alarm_on.value, json.dumps(f.geometry), f.radius_m, f.created_by,
            f.created_ms)  # fmt: skip


class GeofencesSql:
    if TYPE_CHECKING:
        database: Database

    async def add_geofences(self, fences: Sequence[StoredGeofence]) -> None:
        try:
            async with self.database.transaction() as conn:
                await conn.executemany(
                    "INSERT INTO geofences (id, court_id, name, kind, alarm_on, geometry, radius_m, created_by,"
                    " created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    [fence_row(f) for f in fences],
                )
        except Conflict:
            raise Conflict(f"a geofence with one of these ids exists: {[f.id for f in fences]}") from None
        except NotFound:
            raise NotFound("a geofence refers to a court or user that does not exist") from None

    async def list_geofences(self, court_ids: Sequence[CourtId] | None = None) -> list[StoredGeofence]:
        rows = await self.database.fetch(
            "SELECT * FROM geofences WHERE $1::text[] IS NULL OR court_id = ANY($1) ORDER BY created_ms, id",
            None if court_ids is None else list(court_ids),
        )
        return [fence_from_row(r) for r in rows]

    async def get_geofence(self, fence_id: str) -> StoredGeofence:
        row = await self.database.fetchrow("SELECT * FROM geofences WHERE id = $1", fence_id)
        if row is None:
            raise NotFound(f"geofence {fence_id} does not exist")
        return fence_from_row(row)

    async def delete_geofence(self, fence_id: str) -> None:
        if await self.database.fetchval("DELETE FROM geofences WHERE id = $1 RETURNING id", fence_id) is None:
            raise NotFound(f"geofence {fence_id} does not exist")
