"""A GB/T 28181 device's audio as it comes out of the PS, cut into the frames forwarding and recording take. Pure.

G.711 (PCMA/PCMU, 8 kHz, one byte a sample, GB/T 28181-2016 Annex C) has no frame structure: devices put
anything from 20 ms to a second in one PES. aiortc sends each encoded frame as one RTP packet, so a PES is cut
into 20 ms pieces (160 bytes, RFC 3551 §4.5's usual packetisation), each with its own timestamp.
AAC (stream type 0x0F) comes as ADTS frames (ISO/IEC 14496-3 §1.A.2), several of which may share a PES: each
is taken alone, as the recorder's Matroska muxer wants one access unit a packet.
"""

from __future__ import annotations

CLOCK_RATE = 90_000  # PS timestamps
G711_RATE = 8_000
G711_PIECE = 160  # bytes: 20 ms
AAC_SAMPLES = 1_024  # per ADTS raw data block
#: sampling_frequency_index of ADTS (ISO/IEC 14496-3 Table 1.18)
AAC_RATES = (96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350)
G711 = ("audio/PCMA", "audio/PCMU")
AAC = "audio/AAC"


class AudioError(ValueError):
    """Audio bytes that are not what their stream type says."""


def audio_frames(mime: str, data: bytes, pts: int) -> list[tuple[bytes, int]]:
    """The frames (with their 90 kHz timestamps) of one PES's worth of audio; ``AudioError`` when it lies."""
    if mime in G711:
        pieces = range(0, len(data), G711_PIECE)
        return [(data[at : at + G711_PIECE], pts + at * CLOCK_RATE // G711_RATE) for at in pieces]
    if mime == AAC:
        return adts_frames(data, pts)
    raise AudioError(f"{mime} is not taken")


def adts_frames(data: bytes, pts: int) -> list[tuple[bytes, int]]:
    """Each ADTS frame of ``data`` with its timestamp (1,024 samples a frame at the header's rate)."""
    out: list[tuple[bytes, int]] = []
    at = 0
    while at < len(data):
        header = data[at : at + 7]
        if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
            raise AudioError(f"no ADTS sync word at byte {at}")
        rate_index = (header[2] >> 2) & 0x0F
        if rate_index >= len(AAC_RATES):
            raise AudioError(f"ADTS sampling frequency index {rate_index} is reserved")
        length = (header[3] & 0x03) << 11 | header[4] << 3 | header[5] >> 5
        blocks = (header[6] & 0x03) + 1
        if length < 7 or at + length > len(data):
            raise AudioError(f"ADTS frame of {length} bytes at byte {at} overruns the {len(data)} bytes")
        out.append((data[at : at + length], pts))
        pts += blocks * AAC_SAMPLES * CLOCK_RATE // AAC_RATES[rate_index]
        at += length
    return out
