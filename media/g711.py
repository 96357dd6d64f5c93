"""G.711 (ITU-T G.711 A-law and μ-law) expanded to the 16-bit linear PCM each code stands for. Pure.

The recorder needs it because FFmpeg's Matroska muxer takes G.711 only below the standard compliance PyAV
insists on, while 16-bit PCM (``A_PCM/INT/LIT``) it takes. The expansion is a table lookup, not a transcoding:
every code has exactly one value and compressing the value again gives the code back (μ-law's two zeros
aside), so the recording holds the device's audio sample for sample.
"""

from __future__ import annotations

import struct


def _alaw(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    elif segment == 1:
        value += 0x108
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


def _ulaw(code: int) -> int:
    code = ~code & 0xFF
    value = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - value if code & 0x80 else value - 0x84


ALAW = tuple(struct.pack("<h", _alaw(code)) for code in range(256))
ULAW = tuple(struct.pack("<h", _ulaw(code)) for code in range(256))
TABLES = {"audio/pcma": ALAW, "audio/pcmu": ULAW}


def to_linear(mime: str, data: bytes) -> bytes:
    """``data`` (G.711 of ``mime``, audio/PCMA or audio/PCMU) as little-endian signed 16-bit samples."""
    table = TABLES[mime.lower()]
    return b"".join(table[code] for code in data)
