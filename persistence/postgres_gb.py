"""GB/T 28181 devices on PostgreSQL (see ``gb_port``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from core.ids import UnitId
from persistence.gb_port import GbChannel, GbDevice

UPSERT_CHANNEL = (
    "INSERT INTO gb_channels (unit_id, channel_id, name, manufacturer, model, status, parent_id, updated_ms)"
    " VALUES ({}) ON CONFLICT (unit_id, channel_id) DO UPDATE SET name = excluded.name,"
    " manufacturer = excluded.manufacturer, model = excluded.model, status = excluded.status,"
    " parent_id = excluded.parent_id, updated_ms = excluded.updated_ms"
)


def device_from_row(row: Any) -> GbDevice:
    return GbDevice(unit_id=UnitId(row["unit_id"]), device_id=row["device_id"], ha1=row["ha1"])


def channel_from_row(row: Any) -> GbChannel:
    return GbChannel(
        unit_id=UnitId(row["unit_id"]),
        channel_id=row["channel_id"],
        name=row["name"],
        manufacturer=row["manufacturer"],
        model=row["model"],
        status=row["status"],
        parent_id=row["parent_id"],
        updated_ms=row["updated_ms"],
    )


def channel_row(c: GbChannel) -> tuple[Any, ...]:
    return (c.unit_id, c.channel_id, c.name, c.manufacturer, c.model, c.status, c.parent_id, c.updated_ms)


class PostgresGb:
    if TYPE_CHECKING:

        async def _execute(self, sql: str, *args: Any) -> str: ...

        async def _one(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

        async def _all(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

        @property
        def pool(self) -> asyncpg.Pool: ...

    async def add_gb_device(self, device: GbDevice) -> None:
        await self._execute(
            "INSERT INTO gb_devices (unit_id, device_id, ha1) VALUES ($1, $2, $3)",
            device.unit_id,
            device.device_id,
            device.ha1,
        )

    async def find_gb_device(self, device_id: str) -> GbDevice | None:
        row = await self._one("SELECT * FROM gb_devices WHERE device_id = $1", device_id)
        return None if row is None else device_from_row(row)

    async def gb_device_of(self, unit_id: UnitId) -> GbDevice | None:
        row = await self._one("SELECT * FROM gb_devices WHERE unit_id = $1", unit_id)
        return None if row is None else device_from_row(row)

    async def save_gb_channels(self, channels: Sequence[GbChannel]) -> None:
        if not channels:
            return
        sql = UPSERT_CHANNEL.format("$1, $2, $3, $4, $5, $6, $7, $8")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(sql, [channel_row(c) for c in channels])

    async def gb_channels(self, unit_id: UnitId) -> list[GbChannel]:
        rows = await self._all("SELECT * FROM gb_channels WHERE unit_id = $1 ORDER BY channel_id", unit_id)
        return [channel_from_row(r) for r in rows]
