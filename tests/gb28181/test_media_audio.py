"""A GB/T 28181 camera's audio end to end: sipp registers and answers the INVITE, a PS-over-RTP sender streams
H.264 with G.711 (encoded by FFmpeg) or AAC in the same packs, as devices mux them. G.711 reaches an aiortc
WHEP viewer untouched (its decoded samples are the sent codes' values) and is recorded; AAC is recorded
only, the viewer told why; audio of a type the platform does not take, or broken audio, is counted and
logged with the device id while the picture goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import av
import pytest
from aiortc import RTCSessionDescription

from command_center.keys import GB_LIVE, MEDIA
from core.ids import UnitId
from gb28181.media.live import LiveStream
from media import g711
from media.recording import sha256_of
from simulators.gb28181.clip import aac_clip, g711_clip, h264_clip
from simulators.gb28181.sender import send_clip
from tests.conftest import AppFactory, World
from tests.gb28181.test_media_device import UNIT, _cli, gb_media, registered, segments_of, stop
from tests.gb28181.test_sipp_device import DEVICE, gb_enabled
from tests.media_support import SDP_HEADERS, ViewerPeer, eventually, loopback

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "gb_media", "loopback"]  # fixtures

PICTURES = 50


async def camera(world: World, audio: list[bytes], audio_type: int) -> None:
    """The camera's media process: once INVITEd, H.264 (main profile) with ``audio`` in the same packs."""
    clip = h264_clip(PICTURES, profile="main")
    live = world.client.app[GB_LIVE]
    stream: LiveStream | None = None
    while stream is None or stream.dialog is None:
        await asyncio.sleep(0.02)
        stream = live.stream(UnitId(UNIT))
    await send_clip(clip, stream.ssrc, ("127.0.0.1", stream.port), loops=20, audio=audio, audio_type=audio_type)


async def sealed_segments(world: World, *, audio_frames_over: int, within: float = 10.0) -> list[dict[str, object]]:
    """The session's recorded segments once their audit entries hold more than ``audio_frames_over`` audio
    frames: the recorder seals its last segment after the call has ended (on a busy machine, a moment later)."""
    segments: list[dict[str, object]] = []
    for _ in range(int(within / 0.1)):
        segments = await segments_of(world)
        if sum(int(str(s["audio_frames"])) for s in segments) > audio_frames_over:
            return segments
        await asyncio.sleep(0.1)
    frames = sum(int(str(s["audio_frames"])) for s in segments)
    raise AssertionError(f"{len(segments)} segments with {frames} audio frames after {within} s")


async def ended(sender: asyncio.Task[None], call: asyncio.subprocess.Process, *viewers: ViewerPeer) -> None:
    for viewer in viewers:
        await viewer.close()
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    await stop(call)


@pytest.mark.parametrize(("law", "stream_type", "mime"), [("alaw", 0x90, "audio/PCMA"), ("mulaw", 0x91, "audio/PCMU")])
async def test_g711_is_forwarded_as_sent_and_recorded(
    gb_media: None, make_world: AppFactory, tmp_path: Path, law: str, stream_type: int, mime: str
) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    tone = g711_clip(PICTURES, law=law)
    sender = asyncio.create_task(camera(world, tone, stream_type))
    viewer = ViewerPeer(world, kinds=("video", "audio"))
    hub, live = world.client.app[MEDIA], world.client.app[GB_LIVE]
    try:
        await viewer.watch(UNIT)
        publisher = hub.publisher(UnitId(UNIT))
        assert publisher is not None and publisher.media == {"video": "video/H264", "audio": mime}
        video, audio = await asyncio.gather(viewer.frames("video", 20), viewer.frames("audio", 50))
        assert {(f.width, f.height) for f in video} == {(320, 240)}
        assert {(f.sample_rate, f.samples) for f in audio} == {(8_000, 160)}  # 20 ms pieces
        sent = b"".join(tone)
        sent_pcm = g711.to_linear(mime, sent * 2)  # the tone loops: a piece may span the loop's end
        for frame in audio:  # what the viewer decoded is what the camera's codes stand for: not transcoded
            assert bytes(frame.planes[0])[: 2 * frame.samples] in sent_pcm
        stream = live.stream(UnitId(UNIT))
        assert stream is not None and stream.audio_frames >= 50 and stream.audio_errors == 0
        assert publisher.decoded_frames == 0

        response = await world.client.delete(viewer.location, headers=world.auth("operator"))
        assert response.status == 200
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, within=5, what="hung up, session ended")
    finally:
        await ended(sender, call, viewer)

    segments = await sealed_segments(world, audio_frames_over=49)
    for details in segments:
        path = tmp_path / "recordings" / str(details["file"])
        assert sha256_of(path) == details["sha256"]
        with av.open(str(path)) as container:
            assert [s.codec_context.name for s in container.streams] == ["h264", "pcm_s16le"]
            track = container.streams.audio[0]
            assert (track.codec_context.sample_rate, track.codec_context.layout.nb_channels) == (8_000, 1)
            recorded = [bytes(p) for p in container.demux(track) if p.size]
        expected = g711.to_linear(mime, sent * 2)
        assert recorded and all(piece in expected for piece in recorded)  # each 20 ms: the camera's samples
    await world.client.close()
    verified = _cli(tmp_path, "recording", "verify", "--unit", UNIT)
    assert verified.returncode == 0 and f"{len(segments)} segments match" in verified.stdout, verified.stderr


async def test_aac_is_recorded_and_the_viewer_told_why_it_is_not_heard(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world, aac_clip(PICTURES), 0x0F))
    viewer = ViewerPeer(world, kinds=("video", "audio"))
    hub = world.client.app[MEDIA]
    try:
        response = await world.client.post(
            f"/api/whep/{UNIT}", data=await viewer.offer(), headers={**world.auth("operator"), **SDP_HEADERS}
        )
        assert response.status == 201, await response.text()
        note = response.headers["Media-Not-Forwarded"]
        assert "audio/AAC" in note and "WebRTC has no AAC" in note
        answer = await response.text()
        audio_section = answer[answer.index("m=audio") :]
        assert "a=inactive" in audio_section.split("m=video")[0], answer  # nothing is sent in it
        viewer.location = response.headers["Location"]
        await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        assert len(await viewer.frames("video", 20)) == 20
        assert "audio" not in viewer.tracks
        publisher = hub.publisher(UnitId(UNIT))
        assert publisher is not None and publisher.media == {"video": "video/H264", "audio": "audio/AAC"}
        await eventually(lambda: (live := world.client.app[GB_LIVE].stream(UnitId(UNIT))) is not None
                         and live.audio_frames > 25, what="AAC frames to the recorder")  # fmt: skip
        deleted = await world.client.delete(viewer.location, headers=world.auth("operator"))
        assert deleted.status == 200
        await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, within=5, what="hung up, session ended")
    finally:
        await ended(sender, call, viewer)

    segments = await sealed_segments(world, audio_frames_over=25)
    decoded = 0
    for details in segments:
        with av.open(str(tmp_path / "recordings" / str(details["file"]))) as container:
            track = container.streams.audio[0]
            assert track.codec_context.name == "aac" and track.codec_context.sample_rate == 8_000
            for packet in container.demux(track):
                decoded += len(track.codec_context.decode(packet))
    assert decoded > 25


@pytest.mark.parametrize(
    ("audio", "stream_type", "what"),
    [
        ([b"\x11" * 20] * PICTURES, 0x99, "stream type 0x99"),  # G.729: not taken here
        ([b"\x11" * 20] * PICTURES, 0x1B, "stream type 0x1B"),  # an audio stream id with a video type
        ([b"not ADTS at all"] * PICTURES, 0x0F, "broken audio/AAC audio"),  # AAC whose bytes lie
    ],
)
async def test_audio_the_platform_cannot_take_is_counted_logged_and_the_picture_goes_on(
    gb_media: None,
    make_world: AppFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    audio: list[bytes],
    stream_type: int,
    what: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="gb28181.media.live")
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world, audio, stream_type))
    viewer = ViewerPeer(world, kinds=("video", "audio"))
    try:
        await viewer.watch(UNIT)
        assert len(await viewer.frames("video", 25)) == 25
        stream = world.client.app[GB_LIVE].stream(UnitId(UNIT))
        assert stream is not None
        assert stream.receiver.demuxer.unhandled > 0 or stream.audio_errors > 0
        assert stream.audio_frames == 0 and stream.receiver.demuxer.errors == 0
    finally:
        await ended(sender, call, viewer)
    lines = [r.getMessage() for r in caplog.records if DEVICE in r.getMessage() and what in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
