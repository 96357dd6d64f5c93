"""``device add --gb-device-id`` as an administrator runs it: the SIP password is printed once and only its
Digest HA1 is stored."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from config.settings import StoreSettings
from core.ids import UnitId
from gb28181 import digest
from persistence.factory import build_store
from persistence.gb_port import GbDevice
from tests.test_cli import _cli

DEVICE = "34020000001320000007"


def _add(tmp_path: Path, unit_id: str, gb_id: str | None, *more: str) -> tuple[int, str, str]:
    gb = ("--gb-device-id", gb_id) if gb_id is not None else ()
    result = _cli(tmp_path, "device", "add", "--id", unit_id, "--name", "单兵", "--kind", "body_camera",
                  "--court", "HLJ0102", *gb, *more)  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def _stored(tmp_path: Path, unit_id: str) -> GbDevice | None:
    async def stored() -> GbDevice | None:
        store = build_store(StoreSettings(url=f"sqlite:///{tmp_path / 'cli.db'}"))
        await store.open()
        try:
            return await store.gb_device_of(UnitId(unit_id))
        finally:
            await store.close()

    return asyncio.run(stored())


def test_device_add_with_a_gb_device_id_prints_the_sip_password_and_stores_only_ha1(tmp_path: Path) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    status, out, err = _add(tmp_path, "HLJ0102-GB7", DEVICE)
    assert status == 0, err
    found = re.search(r"SIP password \(shown once\): (\S+)", out)
    assert found is not None, out
    password = found.group(1)

    device = _stored(tmp_path, "HLJ0102-GB7")
    assert device is not None and device.device_id == DEVICE and device.rtp_transport is None
    assert f"GB/T 28181 device {DEVICE}: RTP over udp (the setting)" in out
    assert device.ha1 == digest.ha1(DEVICE, "3402000000", password) and password not in device.ha1

    status, _, err = _add(tmp_path, "HLJ0102-GB8", DEVICE)
    assert status == 1 and f"device id {DEVICE} belongs to another unit" in err
    status, _, err = _add(tmp_path, "HLJ0102-GB10", "1234")
    assert status == 2 and "20 digits" in err


def test_device_add_stores_the_devices_own_rtp_transport(tmp_path: Path) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    status, out, err = _add(tmp_path, "HLJ0102-GB9", DEVICE, "--rtp-transport", "tcp-passive")
    assert status == 0, err
    assert "RTP over tcp-passive" in out
    device = _stored(tmp_path, "HLJ0102-GB9")
    assert device is not None and device.rtp_transport == "tcp-passive"
    status, _, err = _add(tmp_path, "HLJ0102-GB11", None, "--rtp-transport", "udp")
    assert status == 2 and "--gb-device-id" in err
    status, _, err = _add(tmp_path, "HLJ0102-GB12", "34020000001320000008", "--rtp-transport", "tcp-active")
    assert status == 2 and "invalid choice" in err
