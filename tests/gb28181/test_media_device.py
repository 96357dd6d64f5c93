"""A GB/T 28181 camera's live video end to end: sipp registers and answers the platform's INVITE, a PS-over-RTP
sender streams an H.264 clip (main profile, as body cameras send) to the port the INVITE named, an aiortc
WHEP viewer decodes the frames, the session is recorded as hashed Matroska evidence that ``recording
verify`` accepts, and the last viewer leaving hangs the call up (BYE, answered by sipp). RTP from an address
or SSRC that was not invited, and datagrams that are not RTP, are dropped while the picture goes on. An SOS
from a camera opens its video and records it with nobody watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import av
import pytest

from command_center.keys import GB_LIVE, MEDIA
from core.ids import UnitId
from gb28181.media.live import LiveStream
from gb28181.media.rtp import build_rtp
from media.evidence import SEGMENT_ACTION
from media.recording import sha256_of
from simulators.gb28181.clip import h264_clip, h265_clip
from simulators.gb28181.sender import send_clip
from tests.conftest import AppFactory, World
from tests.gb28181.test_sipp_device import (
    DEVICE,
    DOMAIN,
    PLATFORM,
    add_gb_unit,
    china_time,
    free_port,
    gb_enabled,
    gb_view,
    sip_port,
)
from tests.media_support import SDP_HEADERS, ViewerPeer, eventually, loopback

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "loopback"]  # fixtures

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
UNIT = "HLJ0102-GB1"


@pytest.fixture
def gb_media(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_GB28181__RTP_PORT_RANGE", "36000-36199")
    monkeypatch.setenv("CC_GB28181__MEDIA_LINGER_SECONDS", "1")


async def registered(
    world: World, tmp_path: Path, scenario: str, ooc: str = "media_ooc.xml", password: str | None = None,
    unit: str = UNIT, device: str = DEVICE, **keys: str,
) -> asyncio.subprocess.Process:  # fmt: skip
    """sipp as the camera, registered and answering the platform's requests (``media_ooc.xml``) meanwhile;
    the unit is added first unless its ``password`` is given. Its trace goes to ``tmp_path``/sipp.msg."""
    password = password or await add_gb_unit(world, unit, device)
    values = {"device_id": device, "domain": DOMAIN, "platform_id": PLATFORM, "expires": "3600", **keys}
    local = str(free_port(socket.SOCK_DGRAM))
    command = ["sipp", f"127.0.0.1:{sip_port(world)}", "-sf", str(HERE / scenario), "-oocsf",
               str(HERE / ooc), "-d", "40000", "-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", local,
               "-au", device, "-ap", password, "-nostdin", "-timeout", "60s", "-trace_msg", "-message_file",
               str(tmp_path / "sipp.msg")]  # fmt: skip
    for name, value in values.items():
        command += ["-key", name, value]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path
    )
    for _ in range(200):
        if (await gb_view(world, unit))["registered"]:
            return process
        await asyncio.sleep(0.05)
    await stop(process)
    raise AssertionError("sipp did not register")


async def stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    await process.wait()


async def camera(world: World, *, stream_type: int = 0x1B) -> None:
    """The camera's media process: once INVITEd, stream the clip to the port and SSRC the INVITE gave."""
    clip = h265_clip(50) if stream_type == 0x24 else h264_clip(50, profile="main")
    live = world.client.app[GB_LIVE]
    stream: LiveStream | None = None
    while stream is None or stream.dialog is None:
        await asyncio.sleep(0.02)
        stream = live.stream(UnitId(UNIT))
    await send_clip(clip, stream.ssrc, ("127.0.0.1", stream.port), loops=20, stream_type=stream_type)


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env.update(CC_DATA_DIR=str(data_dir), CC_STORE__URL=f"sqlite:///{data_dir / 'app.db'}")
    return subprocess.run([sys.executable, "-m", "command_center", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


async def test_a_camera_is_invited_watched_recorded_and_hung_up(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world))
    viewer = ViewerPeer(world)
    try:
        await viewer.watch(UNIT)  # the WHEP request INVITEs the camera and waits for its first keyframe
        live = world.client.app[GB_LIVE]
        stream = live.stream(UnitId(UNIT))
        assert stream is not None and stream.dialog is not None
        frames = await viewer.frames("video", 20)
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        hub = world.client.app[MEDIA]
        publisher = hub.publisher(UnitId(UNIT))
        assert publisher is not None and publisher.decoded_frames == 0 and hub.recording(UnitId(UNIT))

        # Not invited: another address with the right SSRC, the right address with another SSRC, not RTP.
        good = build_rtp(b"\x00\x00\x01\xba", sequence=1, timestamp=0, ssrc=stream.ssrc, marker=True)
        other = build_rtp(b"\x00\x00\x01\xba", sequence=1, timestamp=0, ssrc=stream.ssrc + 1, marker=True)
        for source, packet in (("127.0.0.2", good), ("127.0.0.1", other), ("127.0.0.1", b"\x00garbage")):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((source, 0))
                for _ in range(50):
                    udp.sendto(packet, ("127.0.0.1", stream.port))
        await eventually(lambda: stream.foreign_packets == 100 and stream.bad_packets == 50, what="drops counted")
        before = stream.frames
        assert len(await viewer.frames("video", 10)) == 10  # the picture goes on
        assert stream.frames > before and stream.receiver.demuxer.errors == 0

        response = await world.client.delete(viewer.location, headers=world.auth("operator"))
        assert response.status == 200
        await eventually(lambda: live.stream(UnitId(UNIT)) is None, within=5, what="BYE after the last viewer")
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="the session ended")
    finally:
        await viewer.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    assert "BYE sip:" in (tmp_path / "sipp.msg").read_text(errors="replace")

    root = tmp_path / "recordings"

    def all_sealed() -> bool:  # the recorder seals the last segment after the session has ended
        sealed = list(root.glob("*/*/*.mkv"))
        return bool(sealed) and not list(root.glob("*/*/*.part")) and hub.counts.segments_sealed == len(sealed)

    await eventually(all_sealed, what="the last segment sealed and audited")
    segments = [e.details for e in await world.store.audit_entries() if e.action == SEGMENT_ACTION]
    assert segments and all(s["unit_id"] == UNIT for s in segments)
    for details in segments:
        path = root / str(details["file"])
        assert sha256_of(path) == details["sha256"]
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "h264" and (video.width, video.height) == (320, 240)
            assert next(p for p in container.demux(video=0) if p.dts is not None).is_keyframe
    await world.client.close()
    verified = _cli(tmp_path, "recording", "verify", "--unit", UNIT)
    assert verified.returncode == 0 and f"{len(segments)} segments match" in verified.stdout, verified.stderr


async def segments_of(world: World) -> list[dict[str, object]]:
    return [e.details for e in await world.store.audit_entries() if e.action == SEGMENT_ACTION]


async def test_an_sos_from_a_camera_opens_its_video_and_records_it_unwatched(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_alarm.xml", alarm_time=china_time(-1))
    sender = asyncio.create_task(camera(world))
    hub, live = world.client.app[MEDIA], world.client.app[GB_LIVE]
    try:
        await eventually(lambda: hub.recording(UnitId(UNIT)), within=10, what="the SOS recording")
        assert hub.viewers_of(UnitId(UNIT)) == []
        await asyncio.sleep(2.5)  # past the linger: an SOS recording keeps the call with nobody watching
        stream = live.stream(UnitId(UNIT))
        assert stream is not None and stream.frames > 25 and hub.recording(UnitId(UNIT))
        stopped = await world.client.delete(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert stopped.status == 200
        await eventually(lambda: live.stream(UnitId(UNIT)) is None, within=5, what="BYE once not recorded")
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    [segment] = await segments_of(world)
    assert int(str(segment["video_frames"])) > 25


async def test_h265_is_recorded_but_refused_live_with_the_reason(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    """Browsers cannot play H.265 over WebRTC untranscoded: the viewer is told so, the unwatched call is hung
    up; an operator's recording takes the same camera's H.265 as evidence."""
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world, stream_type=0x24))
    viewer = ViewerPeer(world)
    hub, live = world.client.app[MEDIA], world.client.app[GB_LIVE]
    try:
        response = await world.client.post(
            f"/api/whep/{UNIT}", data=await viewer.offer(), headers={**world.auth("operator"), **SDP_HEADERS}
        )
        assert response.status == 409
        message = (await response.json())["error"]["message"]
        assert "video/H265" in message and "transcoding" in message
        await eventually(lambda: live.stream(UnitId(UNIT)) is None, within=5, what="BYE: nobody can watch it")

        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        sender = asyncio.create_task(camera(world, stream_type=0x24))
        started = await world.client.post(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert started.status == 200, await started.text()
        await asyncio.sleep(2.5)
        stopped = await world.client.delete(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert stopped.status == 200
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, within=5, what="hung up once not recorded")
    finally:
        await viewer.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    segments = await segments_of(world)  # the refused view's short call was recorded too (every session is)
    assert max(int(str(s["video_frames"])) for s in segments) > 25
    for segment in segments:
        with av.open(str(tmp_path / "recordings" / str(segment["file"]))) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "hevc"
            first = next(iter(container.demux(video=0)))
            assert first.is_keyframe
            [picture] = video.codec_context.decode(first)  # the size is in-band (SPS), the header's a placeholder
            assert (picture.width, picture.height) == (320, 240)


async def test_a_camera_hanging_up_ends_the_view(gb_media: None, make_world: AppFactory, tmp_path: Path) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml", ooc="media_ooc_bye.xml")
    sender = asyncio.create_task(camera(world))
    viewer = ViewerPeer(world)
    hub, live = world.client.app[MEDIA], world.client.app[GB_LIVE]
    try:
        await viewer.watch(UNIT)
        assert len(await viewer.frames("video", 5)) == 5
        await eventually(lambda: live.stream(UnitId(UNIT)) is None, within=8, what="the device's BYE taken")
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None and not hub.viewers_of(UnitId(UNIT)),
                         what="the session and its view ended")  # fmt: skip
    finally:
        await viewer.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    trace = (tmp_path / "sipp.msg").read_text(errors="replace")
    assert "BYE sip:" in trace and "SIP/2.0 200 OK" in trace.split("BYE sip:", 1)[1]


async def test_revoking_a_camera_ends_its_video(gb_media: None, make_world: AppFactory, tmp_path: Path) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world))
    viewer, late = ViewerPeer(world), ViewerPeer(world)
    hub, live = world.client.app[MEDIA], world.client.app[GB_LIVE]
    try:
        await viewer.watch(UNIT)
        assert len(await viewer.frames("video", 5)) == 5
        response = await world.client.post(f"/api/units/{UNIT}/revoke", headers=world.auth("admin"))
        assert response.status == 200, await response.text()
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="the session ended")
        await eventually(lambda: live.stream(UnitId(UNIT)) is None, what="hung up")
        again = await world.client.post(
            f"/api/whep/{UNIT}", data=await late.offer(), headers={**world.auth("operator"), **SDP_HEADERS}
        )
        assert again.status == 409  # not registered any more: nothing to INVITE
    finally:
        await late.close()
        await viewer.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    assert "BYE sip:" in (tmp_path / "sipp.msg").read_text(errors="replace")
