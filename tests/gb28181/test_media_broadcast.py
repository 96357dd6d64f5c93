"""Talkback to a GB/T 28181 camera (Broadcast, GB/T 28181-2016 §9.12): while its video is watched, an
operator's push-to-talk (aiortc, PCMA negotiated) makes the platform send MANSCDP Notify Broadcast; sipp as
the camera answers and INVITEs the platform for the audio, which is answered and gets the operator's PCMA
payloads over RTP, untranscoded, at the port of sipp's offer (a socket of the test's); letting go hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from command_center.keys import GB28181, GB_LIVE
from core.ids import UnitId
from gb28181 import sip
from gb28181.media import broadcast
from gb28181.media.broadcast import Talkback
from gb28181.media.rtp import parse_rtp
from media.frames import Feed
from media.passthrough import EncodedTrack, make_packet
from tests.conftest import AppFactory
from tests.gb28181.test_media_device import UNIT, camera, gb_media, registered, stop
from tests.gb28181.test_sipp_device import (
    DEVICE,
    OTHER,
    PLATFORM,
    RawDevice,
    add_gb_unit,
    gb_enabled,
    keepalive,
    sip_port,
)
from tests.media_support import SDP_HEADERS, ViewerPeer, connected, eventually, loopback, new_pc, prefer

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "gb_media", "loopback"]  # fixtures


def tone(start: int, count: int) -> np.ndarray:
    """A 440 Hz tone at 8 kHz, samples ``start`` to ``start + count``."""
    return (8_000 * np.sin(2 * np.pi * 440 * np.arange(start, start + count) / 8_000)).astype(np.int16)


class Microphone(AudioStreamTrack):
    """aiortc's test source (20 ms frames, 8 kHz) playing the tone instead of silence."""

    async def recv(self) -> av.AudioFrame:
        silence = await super().recv()
        assert isinstance(silence, av.AudioFrame) and silence.pts is not None
        frame = av.AudioFrame.from_ndarray(tone(silence.pts, silence.samples).reshape(1, -1), format="s16",
                                           layout="mono")  # fmt: skip
        frame.pts, frame.sample_rate, frame.time_base = silence.pts, silence.sample_rate, silence.time_base
        return frame


def pcma(samples: np.ndarray) -> bytes:
    """The tone as FFmpeg's G.711A encoder (aiortc's) codes it."""
    codec: Any = av.CodecContext.create("pcm_alaw", "w")
    codec.sample_rate, codec.layout, codec.format = 8_000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8_000, 0
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


class Ear(asyncio.DatagramProtocol):
    """The camera's speaker: the RTP the platform sends to the port of its broadcast offer."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(data)


async def test_an_operator_talks_to_a_gb_camera_through_a_broadcast(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    ear = Ear()
    speaker, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: ear, local_addr=("127.0.0.1", 0))
    audio_port = speaker.get_extra_info("sockname")[1]
    call = await registered(world, tmp_path, "media_register.xml", ooc="media_broadcast_ooc.xml",
                            audio_port=str(audio_port))  # fmt: skip
    sender = asyncio.create_task(camera(world))
    viewer = ViewerPeer(world)
    talker = new_pc()
    try:
        opus_only = new_pc()
        prefer(opus_only.addTransceiver(AudioStreamTrack(), direction="sendonly"), "audio", "audio/opus")
        await viewer.watch(UNIT)
        await opus_only.setLocalDescription(await opus_only.createOffer())
        refused = await world.client.post(f"/api/talk/{UNIT}", data=opus_only.localDescription.sdp,
                                          headers={**world.auth("operator"), **SDP_HEADERS})  # fmt: skip
        await opus_only.close()
        assert refused.status == 422 and "PCMA" in await refused.text()

        transceiver = talker.addTransceiver(Microphone(), direction="sendonly")
        prefer(transceiver, "audio", "audio/PCMA")
        await talker.setLocalDescription(await talker.createOffer())
        response = await world.client.post(f"/api/talk/{UNIT}", data=talker.localDescription.sdp,
                                           headers={**world.auth("operator"), **SDP_HEADERS})  # fmt: skip
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
        await talker.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
        await connected(talker)
        await eventually(lambda: len(ear.packets) >= 50, within=15, what="a second of talkback at the camera")
        packets = [parse_rtp(p) for p in ear.packets]
        assert {(p.payload_type, p.ssrc, len(p.payload)) for p in packets} == {(8, 200_000_099, 160)}
        spoken = pcma(tone(0, 8_000 * 60))
        assert all(p.payload in spoken for p in packets)  # the operator's G.711 codes, as aiortc encoded them
        steps = [(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(packets)]
        assert all(step % 160 == 0 and 0 < step <= 160 * 25 for step in steps)  # 20 ms apart (a lost one: 40)

        released = await world.client.delete(location, headers=world.auth("operator"))
        assert released.status == 200
        live = world.client.app[GB_LIVE]
        assert live.stream(UnitId(UNIT)) is not None  # the video goes on
        trace = tmp_path / "sipp.msg"
        await eventually(lambda: trace.read_text(errors="replace").count("BYE sip:") >= 1, within=8,
                         what="the broadcast hung up after push-to-talk is released")  # fmt: skip
        assert live.stream(UnitId(UNIT)) is not None  # that BYE was the broadcast's: the video goes on
    finally:
        await talker.close()
        await viewer.close()
        speaker.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await stop(call)
    text = (tmp_path / "sipp.msg").read_text(errors="replace")
    assert "<CmdType>Broadcast</CmdType>" in text and "m=audio" in text and "a=sendonly" in text


async def _next(raw: RawDevice, want: Callable[[sip.SipMessage], bool], within: float = 5.0) -> sip.SipMessage:
    """The next message the platform sends the raw device that ``want`` takes."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        while True:
            message = sip.parse(await loop.sock_recv(raw.sock, 65_536), max_bytes=65_536)
            if want(message):
                return message


async def test_device_invites_the_platform_did_not_ask_for_or_cannot_serve_are_refused(
    gb_media: None, make_world: AppFactory
) -> None:
    """An INVITE with no broadcast notified: 488; from another address than the registration's, or from a
    device not registered: 403; for a broadcast, an offer without PCMA over RTP/UDP: 488 and no audio sent
    (the operator's frames are dropped), the device's registration and other requests unaffected."""
    world = await make_world()
    password = await add_gb_unit(world, UNIT, DEVICE)
    raw = RawDevice(sip_port(world))
    impostor = RawDevice(sip_port(world), host="127.0.0.3")
    service = world.client.app[GB28181]
    pcma_offer = b"v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\ny=0200000099\r\n"
    ps_offer = b"v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\n"
    sdp = "Content-Type: Application/SDP\r\n"
    track = EncodedTrack("audio", Feed(50, gated=False))
    talkback: asyncio.Task[None] | None = None
    try:
        reply = await raw.register(DEVICE, password)
        assert reply is not None and reply.status == 200
        unsolicited = await raw.exchange(raw.request("INVITE", DEVICE, headers=sdp, body=pcma_offer))
        assert unsolicited is not None and unsolicited.status == 488
        reply = await impostor.exchange(impostor.request("INVITE", DEVICE, headers=sdp, body=pcma_offer))
        assert reply is not None and reply.status == 403
        reply = await raw.exchange(raw.request("INVITE", OTHER, headers=sdp, body=pcma_offer))
        assert reply is not None and reply.status == 403

        unit = await world.store.get_unit(UnitId(UNIT))
        speaker = Talkback(service, unit, track, host="127.0.0.1", media_address=lambda: "", platform_id=PLATFORM,
                           within_seconds=5, idle_seconds=1)  # fmt: skip
        talkback = asyncio.create_task(speaker.run())
        track.feed.push(make_packet(b"\xd5" * 160, 0, 8_000), keyframe=False)
        track.wake()
        notify = await _next(raw, lambda m: m.is_request and b"<CmdType>Broadcast</CmdType>" in m.body)
        assert f"<TargetID>{DEVICE}</TargetID>".encode() in notify.body
        invite = raw.request("INVITE", DEVICE, headers=sdp, body=ps_offer)
        await asyncio.get_running_loop().sock_sendto(raw.sock, invite, ("127.0.0.1", raw.port))
        final = await _next(raw, lambda m: not m.is_request and m.cseq[1] == "INVITE" and m.status >= 200)
        assert final.status == 488 and speaker.calls == 0 and speaker.sent == 0
        reply = await raw.message(DEVICE, keepalive(DEVICE))
        assert reply is not None and reply.status == 200
    finally:
        track.stop()
        if talkback is not None:
            await talkback
        raw.close()
        impostor.close()


async def test_broadcast_audio_goes_only_to_the_registered_device(
    gb_media: None, make_world: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broadcast INVITE whose offer names a hostname or another (loopback) address than the one the device
    registered from: 488, nothing sent; an INVITE from another port of the device's host does not move where
    the device is signalled (its registration keeps its address)."""
    monkeypatch.setattr(broadcast, "RETRY_SECONDS", 0.0)  # ask again on the next frame
    world = await make_world()
    password = await add_gb_unit(world, UNIT, DEVICE)
    raw = RawDevice(sip_port(world))
    side = RawDevice(sip_port(world))  # the same host, another port
    service = world.client.app[GB28181]
    sdp = "Content-Type: Application/SDP\r\n"
    track = EncodedTrack("audio", Feed(50, gated=False))
    talkback: asyncio.Task[None] | None = None
    try:
        reply = await raw.register(DEVICE, password)
        assert reply is not None and reply.status == 200
        registration = service.registration(UnitId(UNIT))
        assert registration is not None
        registered_at = registration.peer.address
        unit = await world.store.get_unit(UnitId(UNIT))
        speaker = Talkback(service, unit, track, host="127.0.0.1", media_address=lambda: "", platform_id=PLATFORM,
                           within_seconds=5, idle_seconds=1)  # fmt: skip
        talkback = asyncio.create_task(speaker.run())
        for n, address in enumerate(("localhost", "127.0.0.2")):
            track.feed.push(make_packet(b"\xd5" * 160, n * 160, 8_000), keyframe=False)
            track.wake()
            await _next(raw, lambda m: m.is_request and b"<CmdType>Broadcast</CmdType>" in m.body)
            offer = f"v=0\r\nc=IN IP4 {address}\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\ny=0200000099\r\n".encode()
            invite = side.request("INVITE", DEVICE, headers=sdp, body=offer)
            await asyncio.get_running_loop().sock_sendto(side.sock, invite, ("127.0.0.1", side.port))
            final = await _next(side, lambda m: not m.is_request and m.cseq[1] == "INVITE" and m.status >= 200)
            assert final.status == 488, address
            assert speaker.calls == 0 and speaker.sent == 0
            assert registration.peer.address == registered_at
        reply = await raw.message(DEVICE, keepalive(DEVICE))
        assert reply is not None and reply.status == 200
    finally:
        track.stop()
        if talkback is not None:
            await talkback
        raw.close()
        side.close()
