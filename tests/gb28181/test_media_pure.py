"""The GB/T 28181 media path's pure parts, without a loop: RTP, PS demultiplexing, the INVITE's SDP.

Streams come from a real encoder (libx264 through PyAV) and, for PS written by someone else, from FFmpeg's
``vob`` muxer (MPEG-2 PS) and ``mpeg`` muxer (MPEG-1 system stream, no PSM).
"""

from __future__ import annotations

import io
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.media.audio import AudioError, audio_frames
from gb28181.media.ps import EsFrame, PsDemuxer, pes_packets, ps_frame
from gb28181.media.rtp import PsOverRtp, RtpError, parse_rtp
from gb28181.media.sdp import (
    Answer,
    AudioOffer,
    SdpError,
    audio_answer,
    invite_offer,
    live_ssrc,
    parse_answer,
    parse_audio_offer,
)
from media import g711
from media.frames import is_keyframe
from media.offers import OfferError, not_forwarded, parse_offer, plan_publish, plan_talk, plan_view
from media.recording import recover
from simulators.gb28181.clip import aac_clip, g711_clip, h264_clip, h265_clip
from simulators.gb28181.sender import rtp_packets

SSRC = 12_345_0001


@pytest.fixture(scope="module")
def clip() -> list[tuple[bytes, bool]]:
    return h264_clip(30, gop=10)


def receive(packets: list[bytes]) -> tuple[list[EsFrame], PsOverRtp]:
    receiver = PsOverRtp()
    frames: list[EsFrame] = []
    for packet in packets:
        frames += receiver.packet(parse_rtp(packet))
    return frames, receiver


def test_every_picture_comes_out_whole_on_its_marker_bit(clip: list[tuple[bytes, bool]]) -> None:
    pictures = rtp_packets(clip, SSRC)
    assert sum(len(p) > 1 for p in pictures) > 0, "some pictures span several RTP packets"
    receiver = PsOverRtp()
    for index, packets in enumerate(pictures):
        frames: list[EsFrame] = []
        for packet in packets:
            frames += receiver.packet(parse_rtp(packet))
        assert [f.data for f in frames] == [clip[index][0]], f"picture {index} is handed on at its last packet"
        assert frames[0].mime == "video/H264" and frames[0].pts == index * 3600
    assert receiver.demuxer.errors == 0 and receiver.demuxer.skipped == 0


def test_reordered_packets_are_put_back_in_order(clip: list[tuple[bytes, bool]]) -> None:
    packets = [p for picture in rtp_packets(clip, SSRC) for p in picture]
    swapped = packets[:]
    for at in range(3, len(swapped) - 1, 7):
        swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
    frames, _ = receive(swapped)
    assert [f.data for f in frames] == [data for data, _ in clip]


def test_a_lost_packet_drops_only_its_picture(clip: list[tuple[bytes, bool]]) -> None:
    pictures = rtp_packets(clip, SSRC)
    victim = next(i for i, p in enumerate(pictures) if len(p) > 2 and i > 0)
    packets = [p for i, picture in enumerate(pictures) for j, p in enumerate(picture) if (i, j) != (victim, 1)]
    frames, receiver = receive(packets)
    got = [f.data for f in frames]
    assert clip[victim][0] not in got
    assert got == [data for i, (data, _) in enumerate(clip) if i != victim][: len(got)]
    assert len(got) >= len(clip) - 3  # the pictures held in the reorder window are still to come
    assert receiver.lost == 1


def test_a_broken_stream_is_survived_and_counted(clip: list[tuple[bytes, bool]]) -> None:
    """Garbage between packs, a truncated pack, a PES whose header lies: the good pictures still come out."""
    demuxer = PsDemuxer()
    out: list[EsFrame] = []
    rng = random.Random(7)
    for index, (data, keyframe) in enumerate(clip):
        pack = ps_frame(0xE0, data, index * 3600, streams={0xE0: 0x1B} if keyframe else None)
        if index == 5:
            pack = pack[: len(pack) // 2]  # truncated: the next pack's start ends it
        if index == 8:
            pack = pack[:20] + b"\x00\x00\x01\xe0\x00\x04\x80\x80\xff\xff" + pack[20:]  # a lying PES header
        out += demuxer.feed(bytes(rng.randrange(256) for _ in range(50)) + pack)
    out += demuxer.flush()
    got = [f.data for f in out]
    for index, (data, _) in enumerate(clip):
        if index not in (4, 5, 7, 8):
            assert data in got, f"picture {index} lost beside the broken ones"
    assert demuxer.skipped > 0 and demuxer.errors > 0


def test_nothing_is_buffered_past_the_limit() -> None:
    demuxer = PsDemuxer(max_buffer=10_000)
    demuxer.feed(b"\x00\x00\x01\xe0\xff\xff" + b"\x80" * 20_000)  # a PES announcing more than ever arrives
    assert demuxer.errors == 1 and len(demuxer._buffer) == 0


def test_g711_audio_is_named_by_the_psm() -> None:
    streams = {0xE0: 0x1B, 0xC0: 0x90}
    stream = ps_frame(0xE0, b"\x00\x00\x00\x01\x65\x88", 0, streams=streams) + pes_packets(0xC0, b"\xd5" * 320, 0)
    stream += pes_packets(0xC0, b"\x55" * 320, 3600) + ps_frame(0xE0, b"\x00\x00\x00\x01\x41\x9a", 3600)
    demuxer = PsDemuxer()
    frames = demuxer.feed(stream) + demuxer.flush()
    assert [(f.mime, f.pts, len(f.data)) for f in frames] == [
        ("audio/PCMA", 0, 320), ("video/H264", 0, 6), ("audio/PCMA", 3600, 320), ("video/H264", 3600, 6),
    ]  # fmt: skip


def test_h265_is_named_by_the_psm() -> None:
    demuxer = PsDemuxer()
    frames = demuxer.feed(ps_frame(0xE0, b"\x00\x00\x00\x01\x40\x01", 0, streams={0xE0: 0x24})) + demuxer.flush()
    assert frames[0].mime == "video/H265"


@pytest.mark.parametrize("muxer", ["vob", "mpeg"])
def test_ps_written_by_ffmpeg_is_read(clip: list[tuple[bytes, bool]], muxer: str) -> None:
    """FFmpeg's muxers cut pictures across 2 KiB packs, the first PES of each with its PTS: the same pictures
    come out, fed in arbitrary pieces, with or without a PSM."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as container:
        stream = container.add_stream("h264", rate=25)
        stream.width, stream.height = 320, 240
        for index, (data, keyframe) in enumerate(clip):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = index
            packet.time_base = stream.time_base = stream.codec_context.time_base = __import__("fractions").Fraction(
                1, 25
            )
            packet.is_keyframe = keyframe
            container.mux(packet)
    data = buffer.getvalue()
    demuxer = PsDemuxer()
    frames: list[EsFrame] = []
    rng = random.Random(3)
    at = 0
    while at < len(data):
        step = rng.randrange(1, 3000)
        frames += demuxer.feed(data[at : at + step])
        at += step
    frames += demuxer.flush()
    assert b"".join(f.data for f in frames) == b"".join(d for d, _ in clip)
    assert len(frames) == len(clip)
    assert demuxer.errors == 0


def test_rtp_that_lies_is_refused() -> None:
    with pytest.raises(RtpError):
        parse_rtp(b"\x80\x60\x00")
    with pytest.raises(RtpError):
        parse_rtp(b"\x40" + b"\x00" * 20)  # version 1
    with pytest.raises(RtpError):
        parse_rtp(b"\x8f" + b"\x00" * 20)  # 15 CSRCs announced, none there


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_any_bytes_are_survived(pieces: list[bytes]) -> None:
    demuxer = PsDemuxer(max_buffer=4096)
    for piece in pieces:
        demuxer.feed(b"\x00\x00\x01\xba" + piece if piece[:1] == b"\x01" else piece)
    demuxer.flush()


def test_the_invite_offers_ps_with_a_gb_ssrc_and_reads_the_answer() -> None:
    y = live_ssrc("3402000000", 12)
    assert y == "0200000012" and len(y) == 10
    offer = invite_offer("34020000001310000001", "10.1.2.3", 30002, y).decode()
    assert "m=video 30002 RTP/AVP 96\r\n" in offer and "a=rtpmap:96 PS/90000\r\n" in offer
    assert "a=recvonly\r\n" in offer and offer.endswith(f"y={y}\r\n") and "c=IN IP4 10.1.2.3\r\n" in offer
    answer = parse_answer(
        b"v=0\r\no=34020000001310000001 0 0 IN IP4 192.0.2.7\r\ns=Play\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
        b"m=video 15060 RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\ny=0200000012\r\nf=\r\n"
    )
    assert answer == Answer("192.0.2.7", 15060, 200000012, "RTP/AVP")
    with pytest.raises(SdpError, match="no video"):
        parse_answer(b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio 1 RTP/AVP 8\r\n")
    with pytest.raises(SdpError, match="no connection address"):
        parse_answer(b"v=0\r\nm=video 1 RTP/AVP 96\r\n")
    with pytest.raises(SdpError, match="malformed"):
        parse_answer(b"v=0\r\nm=video port RTP/AVP 96\r\n")


def test_the_tcp_offer_listens_passively() -> None:
    offer = invite_offer("34020000001310000001", "10.1.2.3", 30002, "0200000001", tcp=True).decode()
    assert "m=video 30002 TCP/RTP/AVP 96\r\n" in offer and "a=setup:passive\r\n" in offer
    assert "a=connection:new\r\n" in offer


def test_h265_keyframes_are_told_apart() -> None:
    clip = h265_clip(30, gop=10)
    assert [is_keyframe("video/H265", data) for data, _ in clip] == [keyframe for _, keyframe in clip]
    assert sum(keyframe for _, keyframe in clip) == 3


def test_psm_types_not_taken_are_dropped_and_counted() -> None:
    """G.729 (0x99) on an audio id, and a video type on an audio id: their PES are dropped, video goes on."""
    for audio_type in (0x99, 0x1B):
        streams = {0xE0: 0x1B, 0xC0: audio_type}
        stream = ps_frame(0xE0, b"\x00\x00\x00\x01\x65\x88", 0, streams=streams) + pes_packets(0xC0, b"\x11" * 20, 0)
        stream += ps_frame(0xE0, b"\x00\x00\x00\x01\x41\x9a", 3600) + pes_packets(0xC0, b"\x11" * 20, 3600)
        demuxer = PsDemuxer()
        frames = demuxer.feed(stream) + demuxer.flush()
        assert [f.mime for f in frames] == ["video/H264", "video/H264"]
        assert demuxer.unknown == {0xC0: audio_type} and demuxer.unhandled == 2 and demuxer.errors == 0


def test_g711_is_cut_into_20_ms_pieces_on_the_90_khz_clock() -> None:
    pieces = audio_frames("audio/PCMA", bytes(range(200)) * 4, 9_000)
    assert [(len(data), pts) for data, pts in pieces] == [(160, 9_000), (160, 10_800), (160, 12_600),
                                                          (160, 14_400), (160, 16_200)]  # fmt: skip
    assert b"".join(data for data, _ in pieces) == bytes(range(200)) * 4


def test_adts_frames_are_taken_one_by_one_and_lies_refused() -> None:
    clip = [frame for frame in aac_clip(4) if frame]
    pieces = audio_frames("audio/AAC", b"".join(clip), 0)
    assert [data for data, _ in pieces] == clip
    assert [pts for _, pts in pieces] == [0, 11_520, 23_040, 34_560][: len(clip)]  # 1,024 samples at 8 kHz
    with pytest.raises(AudioError, match="sync"):
        audio_frames("audio/AAC", b"not ADTS", 0)
    with pytest.raises(AudioError, match="overruns"):
        audio_frames("audio/AAC", clip[0][:-1], 0)


def test_g711_expands_as_ffmpeg_decodes_it() -> None:
    """The recorder's table (media.g711) against FFmpeg's G.711 decoder, every code."""
    for codec, mime in (("pcm_alaw", "audio/PCMA"), ("pcm_mulaw", "audio/PCMU")):
        context: Any = av.CodecContext.create(codec, "r")
        context.sample_rate, context.layout = 8_000, "mono"
        decoded = b"".join(bytes(f.planes[0])[: 2 * f.samples] for f in context.decode(av.Packet(bytes(range(256)))))
        assert g711.to_linear(mime, bytes(range(256))) == decoded


def test_a_viewer_gets_g711_but_never_aac() -> None:
    offer = parse_offer(
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"
        "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n"
    )
    assert plan_view(offer, {"video": "video/H264", "audio": "audio/PCMA"}) == {
        "video": "video/H264", "audio": "audio/PCMA",
    }  # fmt: skip
    assert plan_view(offer, {"video": "video/H264", "audio": "audio/AAC"}) == {"video": "video/H264"}
    assert not_forwarded({"video": "video/H264", "audio": "audio/AAC"}) == {
        "audio": "audio/AAC: WebRTC has no AAC; it is recorded as evidence, not played live"
    }
    assert not_forwarded({"video": "video/H264", "audio": "audio/PCMU"}) == {}
    with pytest.raises(OfferError):  # a WHIP unit still cannot publish G.711
        plan_publish(parse_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=sendonly\r\na=rtpmap:8 PCMA/8000\r\n"))


def test_a_broadcast_offer_must_take_pcma_over_rtp_udp() -> None:
    offer = parse_audio_offer(b"v=0\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 9000 RTP/AVP 8\r\na=recvonly\r\n"
                              b"y=0200000099\r\n", "192.0.2.7")  # fmt: skip
    assert offer == AudioOffer("192.0.2.7", 9000, 8, 200_000_099)
    answer = audio_answer("34020000002000000001", "10.1.2.3", 30010, offer).decode()
    assert "m=audio 30010 RTP/AVP 8\r\n" in answer and "a=sendonly\r\n" in answer and "y=0200000099\r\n" in answer
    dynamic = parse_audio_offer(b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio 9000 RTP/AVP 97\r\na=rtpmap:97 PCMA/8000\r\n",
                                "192.0.2.7")  # fmt: skip
    assert dynamic.payload_type == 97 and dynamic.ssrc is None
    for body, why in (
        (b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio 9000 RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\n", "PCMA"),
        (b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio 9000 TCP/RTP/AVP 8\r\n", "TCP/RTP/AVP"),
        (b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=video 9000 RTP/AVP 96\r\n", "no audio"),
        (b"v=0\r\nm=audio 9000 RTP/AVP 8\r\n", "no connection address"),
        (b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=audio x RTP/AVP 8\r\n", "malformed"),
    ):
        with pytest.raises(SdpError, match=why):
            parse_audio_offer(body, "192.0.2.7")


def test_a_broadcast_offer_sends_only_to_the_device_that_registered() -> None:
    """The audio goes to the IP the device signals from: no hostname (a blocking lookup per packet), no other
    host, no loopback, multicast or unspecified address; loopback only for a device on this host."""
    for address, device, why in (
        ("camera.example", "192.0.2.7", "not an IP address"),
        ("192.0.2.8", "192.0.2.7", "not the device's"),
        ("127.0.0.1", "192.0.2.7", "loopback"),
        ("127.0.0.2", "127.0.0.1", "loopback"),
        ("224.0.0.1", "192.0.2.7", "not a device's own"),
        ("0.0.0.0", "192.0.2.7", "not a device's own"),
    ):
        with pytest.raises(SdpError, match=why):
            parse_audio_offer(f"v=0\r\nc=IN IP4 {address}\r\nm=audio 9000 RTP/AVP 8\r\n".encode(), device)
    assert parse_audio_offer(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9000 RTP/AVP 8\r\n", "127.0.0.1").port == 9000


def test_talkback_is_planned_in_the_units_codec() -> None:
    offer = parse_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 8\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
                        "a=rtpmap:8 PCMA/8000\r\n")  # fmt: skip
    assert plan_talk(offer) == "audio/opus" and plan_talk(offer, "audio/PCMA") == "audio/PCMA"
    opus = parse_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n")
    with pytest.raises(OfferError, match="forwarded as PCMA; the offer's audio section has no PCMA"):
        plan_talk(opus, "audio/PCMA")


def test_a_crashed_segment_with_g711_is_recovered_sample_for_sample(tmp_path: Path) -> None:
    """A ``.part`` left by a crash with H.264 and G.711 (as 16-bit PCM) remuxes to a playable ``.mkv`` whose
    audio is still mono 8 kHz and the camera's very samples."""
    folder = tmp_path / "HLJ0102-GB1" / "session"
    folder.mkdir(parents=True)
    clip, tone = h264_clip(10), g711_clip(10)
    with av.open(str(folder / "00001.mkv.part"), "w", format="matroska") as container:
        video: Any = container.add_stream("h264", rate=90_000)
        video.width, video.height = 320, 240
        audio: Any = container.add_stream("pcm_s16le", rate=8_000)
        audio.codec_context.layout = "mono"
        for index, (data, keyframe) in enumerate(clip):
            for stream, payload in ((video, data), (audio, g711.to_linear("audio/PCMA", tone[index]))):
                packet = av.Packet(payload)
                packet.stream, packet.pts, packet.dts = stream, index * 3600, index * 3600
                packet.time_base, packet.is_keyframe = Fraction(1, 90_000), keyframe
                container.mux(packet)
    [segment] = recover(tmp_path)
    assert segment.recovered and (segment.video_frames, segment.audio_frames) == (10, 10)
    with av.open(str(segment.path)) as container:
        track = container.streams.audio[0]
        assert (track.codec_context.sample_rate, track.codec_context.layout.nb_channels) == (8_000, 1)
        samples = b"".join(bytes(p) for p in container.demux(track) if p.size)
    assert samples == g711.to_linear("audio/PCMA", b"".join(tone))
