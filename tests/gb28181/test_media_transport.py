"""Each GB/T 28181 device's own RTP transport: stored with it (``POST /api/units``'s ``gb_rtp_transport``,
changed by ``PATCH /api/units/{id}/gb28181``, admins only, audited), shown in its GB details and used by the
INVITE. Two cameras (sipp each) stream at once, one over UDP and one over TCP (RFC 4571), both watched."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from command_center.keys import GB_LIVE
from core.ids import UnitId
from gb28181.media.live import LiveStream
from simulators.gb28181.clip import h264_clip
from simulators.gb28181.sender import send_clip
from tests.conftest import AppFactory, World
from tests.gb28181.test_media_device import gb_media, registered, stop
from tests.gb28181.test_sipp_device import COURT, DEVICE, OTHER, gb_enabled, gb_view
from tests.media_support import ViewerPeer, eventually, loopback

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "gb_media", "loopback"]  # fixtures

TCP_UNIT, UDP_UNIT = "HLJ0102-GB1", "HLJ0102-GB2"


async def enrol(world: World, unit: str, device: str, **more: object) -> str:
    response = await world.client.post(
        "/api/units", headers=world.auth("admin"),
        json={"id": unit, "name": unit, "kind": "body_camera", "court_id": COURT, "gb_device_id": device, **more},
    )  # fmt: skip
    assert response.status == 201, await response.text()
    password: str = (await response.json())["sip_password"]
    return password


async def camera(world: World, unit: str) -> None:
    """A camera's media process: once INVITEd, stream over the transport the INVITE asked for."""
    live = world.client.app[GB_LIVE]
    stream: LiveStream | None = None
    while stream is None or stream.dialog is None:
        await asyncio.sleep(0.02)
        stream = live.stream(UnitId(unit))
    await send_clip(h264_clip(50), stream.ssrc, ("127.0.0.1", stream.port), loops=20, tcp=stream.tcp)


def invites(trace: Path) -> list[str]:
    """The media lines of the INVITEs sipp received."""
    text = trace.read_text(errors="replace")
    return [part.split("m=video", 1)[1].split("\n", 1)[0].strip() for part in text.split("INVITE sip:")[1:]]


async def test_a_udp_camera_and_a_tcp_camera_are_watched_at_once(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    tcp_password = await enrol(world, TCP_UNIT, DEVICE, gb_rtp_transport="tcp-passive")
    udp_password = await enrol(world, UDP_UNIT, OTHER)
    assert {k: (await gb_view(world, TCP_UNIT))[k] for k in ("rtp_transport", "rtp_transport_own")} == {
        "rtp_transport": "tcp-passive", "rtp_transport_own": True,
    }  # fmt: skip
    assert {k: (await gb_view(world, UDP_UNIT))[k] for k in ("rtp_transport", "rtp_transport_own")} == {
        "rtp_transport": "udp", "rtp_transport_own": False,
    }  # fmt: skip
    (tmp_path / "tcp").mkdir()
    (tmp_path / "udp").mkdir()
    calls = [
        await registered(world, tmp_path / "tcp", "media_register.xml", password=tcp_password, unit=TCP_UNIT,
                         device=DEVICE),
        await registered(world, tmp_path / "udp", "media_register.xml", password=udp_password, unit=UDP_UNIT,
                         device=OTHER),
    ]  # fmt: skip
    senders = [asyncio.create_task(camera(world, unit)) for unit in (TCP_UNIT, UDP_UNIT)]
    viewers = [ViewerPeer(world), ViewerPeer(world)]
    live = world.client.app[GB_LIVE]
    try:
        await asyncio.gather(viewers[0].watch(TCP_UNIT), viewers[1].watch(UDP_UNIT))
        tcp_frames, udp_frames = await asyncio.gather(viewers[0].frames("video", 20), viewers[1].frames("video", 20))
        assert len(tcp_frames) == len(udp_frames) == 20
        tcp_stream, udp_stream = live.stream(UnitId(TCP_UNIT)), live.stream(UnitId(UDP_UNIT))
        assert tcp_stream is not None and tcp_stream.tcp and len(tcp_stream.connections) == 1
        assert udp_stream is not None and not udp_stream.tcp and udp_stream.socket is not None

        # The UDP camera moves to TCP: its next INVITE asks for it.
        changed = await world.client.patch(f"/api/units/{UDP_UNIT}/gb28181", json={"rtp_transport": "tcp-passive"},
                                           headers=world.auth("admin"))  # fmt: skip
        assert changed.status == 200, await changed.text()
        assert (await changed.json())["rtp_transport"] == "tcp-passive"
        senders[1].cancel()
        await viewers[1].close()
        deleted = await world.client.delete(viewers[1].location, headers=world.auth("operator"))
        assert deleted.status == 200
        await eventually(lambda: live.stream(UnitId(UDP_UNIT)) is None, within=5, what="hung up after its viewer")
        senders[1] = asyncio.create_task(camera(world, UDP_UNIT))
        viewers[1] = ViewerPeer(world)
        await viewers[1].watch(UDP_UNIT)
        assert len(await viewers[1].frames("video", 10)) == 10
        again = live.stream(UnitId(UDP_UNIT))
        assert again is not None and again.tcp and len(again.connections) == 1
    finally:
        for viewer in viewers:
            await viewer.close()
        for sender in senders:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for call in calls:
            await stop(call)
    assert invites(tmp_path / "tcp" / "sipp.msg")[0].startswith(
        tuple(f"{p} TCP/RTP/AVP 96" for p in range(36000, 36200))
    )
    udp_offers = invites(tmp_path / "udp" / "sipp.msg")
    assert " RTP/AVP 96" in udp_offers[0] and "TCP" not in udp_offers[0] and "TCP/RTP/AVP 96" in udp_offers[-1]
    audited = [e.details for e in await world.store.audit_entries() if e.action == "gb28181.device.update"]
    assert audited == [{"unit_id": UDP_UNIT, "device_id": OTHER, "rtp_transport": "tcp-passive"}]


async def test_the_transport_is_checked_and_changed_by_admins_only(gb_media: None, make_world: AppFactory) -> None:
    world = await make_world()
    await enrol(world, TCP_UNIT, DEVICE)
    path = f"/api/units/{TCP_UNIT}/gb28181"
    for body, role, status in (
        ({"rtp_transport": "tcp-passive"}, "operator", 403),
        ({"rtp_transport": "tcp-active"}, "admin", 422),
        ({"rtp_transport": "udp", "extra": 1}, "admin", 422),
        ({}, "admin", 422),
    ):
        response = await world.client.patch(path, json=body, headers=world.auth(role))
        assert response.status == status, (body, role, await response.text())
    assert (await gb_view(world, TCP_UNIT))["rtp_transport_own"] is False  # nothing changed
    changed = await world.client.patch(path, json={"rtp_transport": "udp"}, headers=world.auth("admin"))
    assert (await changed.json())["rtp_transport_own"] is True
    reset = await world.client.patch(path, json={"rtp_transport": None}, headers=world.auth("admin"))
    assert (await reset.json())["rtp_transport_own"] is False
    plain = await world.client.patch("/api/units/HLJ0102-U01/gb28181", json={"rtp_transport": "udp"},
                                     headers=world.auth("admin"))  # fmt: skip
    assert plain.status == 404
    refused = await world.client.post(
        "/api/units", headers=world.auth("admin"),
        json={"id": "HLJ0102-X9", "name": "x", "kind": "body_camera", "court_id": COURT, "gb_rtp_transport": "udp"},
    )  # fmt: skip
    assert refused.status == 422 and "gb_device_id" in await refused.text()
