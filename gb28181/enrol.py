"""Making a unit a GB/T 28181 device: its SIP password (shown once) and the HA1 stored in its place.

Shared by ``POST /api/units`` and the CLI's ``device add --gb-device-id``.
"""

from __future__ import annotations

from config.settings import Gb28181Settings
from core.errors import Conflict
from core.ids import UnitId
from gb28181 import digest
from persistence.gb_port import GbDevice, GbStore


def keepalive_silence(settings: Gb28181Settings) -> float:
    """The silence after which a GB unit is offline: its missed keepalives (GB/T 28181 §9.6)."""
    return settings.keepalive_interval_seconds * settings.keepalive_misses


async def ensure_free(store: GbStore, device_id: str) -> None:
    """Refuse a device id another unit has, before the unit is created (the id is unique per platform)."""
    if await store.find_gb_device(device_id) is not None:
        raise Conflict(f"GB/T 28181 device id {device_id} belongs to another unit")


async def enrol(
    store: GbStore, unit_id: UnitId, device_id: str, settings: Gb28181Settings, *, rtp_transport: str | None = None
) -> str:
    """Store the device's HA1 for the configured realm (and its own RTP transport, if it has one) and return
    the password (never stored)."""
    password = digest.new_password()
    ha1 = digest.ha1(device_id, settings.domain, password)
    await store.add_gb_device(GbDevice(unit_id, device_id, ha1, rtp_transport))
    return password


def rtp_transport(device: GbDevice, settings: Gb28181Settings) -> str:
    """How the device is asked to send RTP: its own choice, else the platform's ``gb28181.rtp_transport``."""
    return device.rtp_transport or settings.rtp_transport
