"""GB/T 28181 devices on SQLite (see ``gb_port``): the same statements as PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.ids import UnitId
from persistence.gb_port import GbChannel, GbDevice
from persistence.postgres_gb import UPSERT_CHANNEL, channel_from_row, channel_row, device_from_row


class SqliteGb:
    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

    async def add_gb_device(self, device: GbDevice) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO gb_devices (unit_id, device_id, ha1) VALUES (?, ?, ?)",
                (device.unit_id, device.device_id, device.ha1),
            )

    async def find_gb_device(self, device_id: str) -> GbDevice | None:
        rows = await self._q("SELECT * FROM gb_devices WHERE device_id = ?", (device_id,))
        return device_from_row(rows[0]) if rows else None

    async def gb_device_of(self, unit_id: UnitId) -> GbDevice | None:
        rows = await self._q("SELECT * FROM gb_devices WHERE unit_id = ?", (unit_id,))
        return device_from_row(rows[0]) if rows else None

    async def save_gb_channels(self, channels: Sequence[GbChannel]) -> None:
        if not channels:
            return
        async with self._tx() as db:
            await db.executemany(UPSERT_CHANNEL.format(", ".join("?" * 8)), [channel_row(c) for c in channels])

    async def gb_channels(self, unit_id: UnitId) -> list[GbChannel]:
        rows = await self._q("SELECT * FROM gb_channels WHERE unit_id = ? ORDER BY channel_id", (unit_id,))
        return [channel_from_row(r) for r in rows]
