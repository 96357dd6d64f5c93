"""The demo's GB/T 28181 device simulator against the app: it registers with Digest, its walk shows on the
map through MobilePosition, and its camera answers the platform's INVITE so a WHEP viewer sees it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from command_center.keys import GB_LIVE
from core.ids import UnitId
from simulators.gb28181.clip import h264_clip
from simulators.gb28181.device import SimulatedDevice
from tests.conftest import AppFactory
from tests.gb28181.test_sipp_device import DEVICE, DOMAIN, PLATFORM, add_gb_unit, gb_enabled, live, sip_port
from tests.media_support import ViewerPeer, eventually, loopback

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "loopback"]  # fixtures
UNIT = "HLJ0102-GB1"


@pytest.mark.parametrize("transport", ["udp", "tcp-passive"])
async def test_the_simulated_camera_registers_walks_and_streams(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """Over UDP, and over TCP with the platform listening (RFC 4571 framing), where a connection from an
    address that was not invited is closed at once."""
    monkeypatch.setenv("CC_GB28181__RTP_PORT_RANGE", "36200-36399")
    monkeypatch.setenv("CC_GB28181__RTP_TRANSPORT", transport)
    world = await make_world()
    password = await add_gb_unit(world, UNIT, DEVICE)
    device = SimulatedDevice(DEVICE, password, ("127.0.0.1", sip_port(world)), domain=DOMAIN, platform_id=PLATFORM,
                             seed=3, clip=h264_clip(50, gop=25), position_seconds=0.5)  # fmt: skip
    stop = asyncio.Event()
    running = asyncio.create_task(device.run(stop))
    viewer = ViewerPeer(world)
    try:
        await eventually(lambda: device.registered, what="registered")
        for _ in range(100):
            if (await live(world, UNIT)).get("position"):
                break
            await asyncio.sleep(0.1)
        position = (await live(world, UNIT))["position"]
        assert position is not None and 45 < position["lat"] < 46.5 and 126 < position["lon"] < 127.5
        await viewer.watch(UNIT)
        frames = await viewer.frames("video", 10)
        assert frames[0].width == 320 and device.streams_served == 1
        stream = world.client.app[GB_LIVE].stream(UnitId(UNIT))
        assert stream is not None and (stream.listener is not None) == (transport == "tcp-passive")
        if transport == "tcp-passive":
            assert len(stream.connections) == 1
            reader, writer = await asyncio.open_connection("127.0.0.1", stream.port, local_addr=("127.0.0.2", 0))
            writer.write(b"\x00\x0c" + b"\x80" * 12)
            with contextlib.suppress(ConnectionResetError):  # closed at once (reset: our bytes were unread)
                assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert stream.foreign_packets == 1 and len(stream.connections) == 1
            assert len(await viewer.frames("video", 5)) == 5
    finally:
        await viewer.close()
        stop.set()
        with contextlib.suppress(Exception):
            await running
