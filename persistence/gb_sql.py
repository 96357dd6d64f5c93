"""GB/T 28181 devices and channels (``persistence.gb_port``), written once for both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import NotFound
from core.ids import UnitId
from persistence.database import Database, Row
from persistence.gb_port import GbChannel, GbDevice

_UPSERT_CHANNEL = (
    "INSERT INTO gb_channels (unit_id, channel_id, name, manufacturer, model, status, parent_id, updated_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (unit_id, channel_id) DO UPDATE SET name = excluded.name,"
    " manufacturer = excluded.manufacturer, model = excluded.model, status = excluded.status,"
    " parent_id = excluded.parent_id, updated_ms = excluded.updated_ms"
)


def device_from_row(row: Row) -> GbDevice:
    return GbDevice(unit_id=UnitId(row["unit_id"]), device_id=row["device_id"], ha1=row["ha1"],
                    rtp_transport=row["rtp_transport"])  # fmt: skip


def channel_from_row(row: Row) -> GbChannel:
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


class GbSql:
    if TYPE_CHECKING:
        database: Database

    async def add_gb_device(self, device: GbDevice) -> None:
        await self.database.execute(
            "INSERT INTO gb_devices (unit_id, device_id, ha1, rtp_transport) VALUES ($1, $2, $3, $4)",
            device.unit_id, device.device_id, device.ha1, device.rtp_transport,
        )  # fmt: skip

    async def find_gb_device(self, device_id: str) -> GbDevice | None:
        row = await self.database.fetchrow("SELECT * FROM gb_devices WHERE device_id = $1", device_id)
        return None if row is None else device_from_row(row)

    async def gb_device_of(self, unit_id: UnitId) -> GbDevice | None:
        row = await self.database.fetchrow("SELECT * FROM gb_devices WHERE unit_id = $1", unit_id)
        return None if row is None else device_from_row(row)

    async def set_gb_rtp_transport(self, unit_id: UnitId, rtp_transport: str | None) -> GbDevice:
        row = await self.database.fetchrow(
            "UPDATE gb_devices SET rtp_transport = $2 WHERE unit_id = $1 RETURNING *", unit_id, rtp_transport
        )
        if row is None:
            raise NotFound(f"unit {unit_id} is not a GB/T 28181 device")
        return device_from_row(row)

    async def save_gb_channels(self, channels: Sequence[GbChannel]) -> None:
        if not channels:
            return
        async with self.database.transaction() as conn:
            await conn.executemany(_UPSERT_CHANNEL, [channel_row(c) for c in channels])

    async def gb_channels(self, unit_id: UnitId) -> list[GbChannel]:
        rows = await self.database.fetch("SELECT * FROM gb_channels WHERE unit_id = $1 ORDER BY channel_id", unit_id)
        return [channel_from_row(r) for r in rows]
