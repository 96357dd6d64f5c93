"""A device's live video as GB/T 28181 sends it: one PS pack per picture (system header and PSM on keyframes),
cut into RTP packets of payload type 96 with the invited SSRC, the marker bit on each picture's last packet,
every packet of a picture carrying its timestamp (GB/T 28181-2022 §C.2)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence

from gb28181.media.ps import pes_packets, ps_frame
from gb28181.media.rtp import build_rtp

RTP_PAYLOAD = 1_400


AUDIO_STREAM = 0xC0


def rtp_packets(clip: Sequence[tuple[bytes, bool]], ssrc: int, *, fps: int = 25, first_sequence: int = 0,
                first_pts: int = 0, stream_type: int = 0x1B, audio: Sequence[bytes] | None = None,
                audio_type: int = 0x90) -> list[list[bytes]]:  # fmt: skip
    """Each picture of ``clip`` as its RTP packets; the PSM names the video ``stream_type`` (0x1B H.264,
    0x24 H.265). ``audio``: a piece for each picture, sent in its pack after it as stream 0xC0 of
    ``audio_type`` (0x90 G.711A, 0x91 G.711μ, 0x0F AAC), with the picture's PTS, as GB devices mux it."""
    out: list[list[bytes]] = []
    sequence = first_sequence
    streams = {0xE0: stream_type} | ({AUDIO_STREAM: audio_type} if audio is not None else {})
    for index, (data, keyframe) in enumerate(clip):
        pts = first_pts + index * 90_000 // fps
        pack = ps_frame(0xE0, data, pts, streams=streams if keyframe else None)
        if audio is not None and audio[index % len(audio)]:
            pack += pes_packets(AUDIO_STREAM, audio[index % len(audio)], pts)
        chunks = [pack[i : i + RTP_PAYLOAD] for i in range(0, len(pack), RTP_PAYLOAD)]
        packets = []
        for number, chunk in enumerate(chunks):
            last = number == len(chunks) - 1
            packets.append(build_rtp(chunk, sequence=sequence, timestamp=pts, ssrc=ssrc, marker=last))
            sequence += 1
        out.append(packets)
    return out


async def send_clip(clip: Sequence[tuple[bytes, bool]], ssrc: int, to: tuple[str, int], *, fps: int = 25,
                    source: str = "127.0.0.1", loops: int = 1, stream_type: int = 0x1B, tcp: bool = False,
                    on_sent: Callable[[bytes], None] | None = None, audio: Sequence[bytes] | None = None,
                    audio_type: int = 0x90) -> int:  # fmt: skip
    """Stream ``clip`` in real time to ``to`` from an address of ``source``, ``loops`` times over (sequence
    numbers and timestamps going on, as a live camera's do); the packets sent. ``tcp``: connect to ``to`` and
    frame each packet with its 16-bit length (RFC 4571), as a device does for ``TCP/RTP/AVP`` with the
    platform passive. ``on_sent`` is told of each picture as it leaves (a benchmark's latency clock).
    ``audio``, ``audio_type``: as ``rtp_packets`` takes them."""
    sent = 0
    sequence = 0
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    udp: socket.socket | None = None
    if tcp:
        _, writer = await asyncio.open_connection(*to, local_addr=(source, 0))
    else:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((source, 0))
        udp.setblocking(False)
    try:
        start = loop.time()
        for round_ in range(loops):
            first = round_ * len(clip)
            pictures = rtp_packets(clip, ssrc, fps=fps, first_sequence=sequence, first_pts=first * 90_000 // fps,
                                   stream_type=stream_type, audio=audio, audio_type=audio_type)  # fmt: skip
            for index, packets in enumerate(pictures):
                await asyncio.sleep(max(0.0, start + (first + index) / fps - loop.time()))
                if writer is not None:
                    writer.write(b"".join(len(p).to_bytes(2, "big") + p for p in packets))
                    await writer.drain()
                else:
                    assert udp is not None
                    for packet in packets:
                        udp.sendto(packet, to)
                if on_sent is not None:
                    on_sent(clip[index][0])
                sent += len(packets)
                sequence += len(packets)
    finally:
        if writer is not None:
            writer.close()
        if udp is not None:
            udp.close()
    return sent
