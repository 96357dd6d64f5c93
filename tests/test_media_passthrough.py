"""Guards of the aiortc internals ``media.passthrough`` relies on: if an aiortc release moves them, these fail.

Two real peers on loopback, no app: one sends a camera, the other taps its receiver.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription

from media import passthrough
from media.frames import is_keyframe
from tests.media_support import ColourCamera, connected, eventually, loopback, new_pc, prefer

__all__ = ["loopback"]
pytestmark = pytest.mark.usefixtures("loopback")


async def test_the_internals_are_where_passthrough_expects_them() -> None:
    assert await passthrough.check_internals() == []


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
async def test_a_tapped_receiver_forwards_encoded_frames_and_decodes_none(mime: str) -> None:
    sender_pc, receiver_pc = new_pc(), new_pc()
    try:
        prefer(sender_pc.addTransceiver(ColourCamera((10, 200, 10)), direction="sendonly"), "video", mime)
        frames: list[tuple[str, bytes, int, int]] = []
        transceiver = receiver_pc.addTransceiver("video", direction="recvonly")
        passthrough.tap_receiver(transceiver.receiver, lambda *frame: frames.append(frame))
        keyframe_requests = []
        passthrough.on_keyframe_request(sender_pc.getTransceivers()[0].sender, lambda: keyframe_requests.append(1))
        decoded = []

        async def drain() -> None:
            track = transceiver.receiver.track
            while True:
                decoded.append(await track.recv())

        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(RTCSessionDescription(receiver_pc.localDescription.sdp, "answer"))
        await connected(sender_pc)
        draining = asyncio.create_task(drain())
        await eventually(lambda: len(frames) >= 10)

        assert frames[0][0].lower() == mime.lower() and frames[0][3] == 90_000
        assert is_keyframe(mime, frames[0][1])  # a stream starts with a keyframe …
        assert not any(is_keyframe(mime, f[1]) for f in frames[1:10])  # … and aiortc's encoder sends no other
        assert [f[2] for f in frames] == sorted(f[2] for f in frames) and frames[0][2] == 0  # timestamps from 0
        assert decoded == []
        assert passthrough.tapped_frames(transceiver.receiver) == len(frames)
        assert passthrough.sender_encoded(sender_pc.getTransceivers()[0].sender)  # the check can see encoding

        seen = len(frames)
        assert await passthrough.request_keyframe(transceiver.receiver) >= 1  # RTCP PLI to the sender
        await eventually(lambda: any(is_keyframe(mime, f[1]) for f in frames[seen:]), within=5)
        assert keyframe_requests  # the sender-side hook saw the PLI
        assert decoded == []
        draining.cancel()
    finally:
        await sender_pc.close()
        await receiver_pc.close()


async def test_tapping_something_else_fails_loudly() -> None:
    pc = new_pc()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        passthrough.tap_receiver(receiver, lambda *frame: None)
        with pytest.raises(passthrough.PassthroughUnavailable):  # tapped twice: its queue is no longer aiortc's
            passthrough.tap_receiver(receiver, lambda *frame: None)
        with pytest.raises(passthrough.PassthroughUnavailable):
            passthrough.tap_receiver(object(), lambda *frame: None)  # type: ignore[arg-type]
    finally:
        await pc.close()


def test_frames_are_handed_on_when_complete_not_a_frame_later() -> None:
    from aiortc.rtp import RtpPacket

    from media.passthrough import FrameAssembler

    def packet(seq: int, timestamp: int, marker: bool, data: bytes) -> RtpPacket:
        p = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=timestamp)
        p._data = data  # type: ignore[attr-defined]  # what the receiver's depayloader sets
        return p

    video = FrameAssembler(video=True)
    assert video.add(packet(10, 3000, False, b"a"))[1] is None  # the frame's first packet: not complete yet
    frame = video.add(packet(11, 3000, True, b"b"))[1]  # its last (marker): complete at once
    assert frame is not None and (frame.data, frame.timestamp) == (b"ab", 3000)
    assert video.add(packet(13, 6000, True, b"d"))[1] is None  # 12 is missing: wait (NACK may bring it)
    late = video.add(packet(12, 6000, False, b"c"))[1]
    assert late is not None and late.data == b"cd"

    audio = FrameAssembler(video=False)
    for seq in range(5):  # every Opus packet is a frame of its own: no prefetch depth
        got = audio.add(packet(100 + seq, seq * 960, False, bytes([seq])))[1]
        assert got is not None and got.data == bytes([seq])
