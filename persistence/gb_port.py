"""The storage GB/T 28181 devices need; part of the ``Store`` port (see ``gb28181``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.ids import UnitId


@dataclass(frozen=True, slots=True)
class GbDevice:
    """A unit that is a GB/T 28181 device: its 20-digit id, Digest HA1 (MD5 of id:realm:password) and how it
    sends RTP (``udp`` or ``tcp-passive``; None: the platform's ``gb28181.rtp_transport``)."""

    unit_id: UnitId
    device_id: str
    ha1: str
    rtp_transport: str | None = None


@dataclass(frozen=True, slots=True)
class GbChannel:
    """A channel (camera) a device listed in its Catalog response."""

    unit_id: UnitId
    channel_id: str
    name: str
    manufacturer: str
    model: str
    status: str
    parent_id: str
    updated_ms: int


class GbStore(Protocol):
    async def add_gb_device(self, device: GbDevice) -> None:
        """Conflict when the device id belongs to another unit already; NotFound for an unknown unit."""

    async def find_gb_device(self, device_id: str) -> GbDevice | None: ...

    async def gb_device_of(self, unit_id: UnitId) -> GbDevice | None: ...

    async def set_gb_rtp_transport(self, unit_id: UnitId, rtp_transport: str | None) -> GbDevice:
        """Change how the device sends RTP from its next INVITE; NotFound when the unit is no GB device."""

    async def save_gb_channels(self, channels: Sequence[GbChannel]) -> None:
        """Insert or update each (unit, channel): a device sends its catalog again after every registration."""

    async def gb_channels(self, unit_id: UnitId) -> list[GbChannel]: ...
