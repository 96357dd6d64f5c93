"""RTP (RFC 3550 §5.1) carrying MPEG-PS as GB/T 28181 specifies: payload type 96 (PS/90000), the SSRC the
platform gave in the INVITE's ``y=`` line, the marker bit on the last packet of a frame. Pure.

``PsOverRtp`` puts a device's packets back in order through a small window, hands the PS bytes to the
demuxer and answers the frames completed. A packet older than the window or a gap it cannot fill drops
the partly gathered frame (the demuxer resynchronises on the next pack) rather than forward a broken one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gb28181.media.ps import EsFrame, PsDemuxer

RTP_VERSION = 2
REORDER_WINDOW = 16  # packets held back waiting for a missing one (UDP on one path rarely reorders more)


class RtpError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RtpPacket:
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """One RTP packet; ``RtpError`` for anything that is not RTP version 2 or whose lengths lie."""
    if len(data) < 12:
        raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
    first = data[0]
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}")
    at = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < at + 4:
            raise RtpError("truncated header extension")
        at += 4 + 4 * int.from_bytes(data[at + 2 : at + 4], "big")
    end = len(data)
    if first & 0x20:  # padding
        end -= data[-1]
    if at > end:
        raise RtpError("header longer than the packet")
    return RtpPacket(
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        marker=bool(data[1] & 0x80),
        payload_type=data[1] & 0x7F,
        payload=data[at:end],
    )


def build_rtp(
    payload: bytes, *, sequence: int, timestamp: int, ssrc: int, marker: bool, payload_type: int = 96
) -> bytes:
    """An RTP packet (the device side: the simulator and the tests' sender)."""
    return (
        bytes([0x80, (0x80 if marker else 0) | payload_type])
        + (sequence & 0xFFFF).to_bytes(2, "big")
        + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
    )


class PsOverRtp:
    """A device's RTP packets in, encoded frames out."""

    def __init__(self, demuxer: PsDemuxer | None = None) -> None:
        self.demuxer = demuxer or PsDemuxer()
        self._next: int | None = None  # the sequence number expected next
        self._held: dict[int, RtpPacket] = {}
        self.lost = 0  # packets never received
        self.late = 0  # packets arriving after their place was given up

    def packet(self, packet: RtpPacket) -> list[EsFrame]:
        if self._next is None:
            self._next = packet.sequence
        ahead = (packet.sequence - self._next) & 0xFFFF
        if ahead >= 0x8000:  # behind what was already handed on (or a duplicate)
            self.late += 1
            return []
        self._held[packet.sequence] = packet
        out: list[EsFrame] = []
        while self._held:
            if self._next in self._held:
                out += self._take(self._held.pop(self._next))
            elif len(self._held) > REORDER_WINDOW:  # give up on the missing one
                expected = self._next
                nearest = min(self._held, key=lambda s: (s - expected) & 0xFFFF)
                self.lost += (nearest - expected) & 0xFFFF
                self.demuxer.lose()
                self._next = nearest
            else:
                break
        return out

    def _take(self, packet: RtpPacket) -> list[EsFrame]:
        self._next = (packet.sequence + 1) & 0xFFFF
        frames = self.demuxer.feed(packet.payload)
        if packet.marker:
            frames += self.demuxer.flush()
        return frames
