"""A short H.264 clip made here (a moving test pattern), so the simulator and the tests need no media file."""

from __future__ import annotations

import fractions
import io
from typing import Any

import av
import numpy as np


def h264_clip(frames: int, *, width: int = 320, height: int = 240, fps: int = 25, gop: int = 25,
              profile: str = "baseline") -> list[tuple[bytes, bool]]:  # fmt: skip
    """``frames`` encoded pictures (Annex B access units) and whether each is a keyframe."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.options = {"profile": profile, "preset": "ultrafast", "tune": "zerolatency", "g": str(gop),
                     "keyint_min": str(gop), "repeat-headers": "1", "bframes": "0"}  # fmt: skip
    return _encode(codec, frames, width, height)


def _encode(codec: Any, frames: int, width: int, height: int) -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    y, x = np.mgrid[0:height, 0:width]
    for index in range(frames):
        picture = ((x + 4 * index) % 256).astype(np.uint8) ^ ((y // 16) * 16).astype(np.uint8)
        image = np.stack([picture, np.roll(picture, index, axis=1), 255 - picture], axis=-1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        out += [(bytes(p), p.is_keyframe) for p in codec.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in codec.encode(None)]
    return out


def h265_clip(frames: int, *, width: int = 320, height: int = 240, fps: int = 25,
              gop: int = 25) -> list[tuple[bytes, bool]]:  # fmt: skip
    """The same test pattern in H.265 (libx265), as 2022-edition body cameras send."""
    codec = av.CodecContext.create("libx265", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    params = f"keyint={gop}:min-keyint={gop}:bframes=0:repeat-headers=1:log-level=error"
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "x265-params": params}
    return _encode(codec, frames, width, height)


def g711_clip(pictures: int, *, fps: int = 25, law: str = "alaw", hz: float = 440.0) -> list[bytes]:
    """A tone in G.711 (``alaw``: PCMA, ``mulaw``: PCMU, 8 kHz), one piece for each of ``pictures`` pictures
    (40 ms at 25 fps), encoded by FFmpeg's G.711 encoder."""
    codec: Any = av.CodecContext.create(f"pcm_{law}", "w")
    codec.sample_rate, codec.layout, codec.format = 8_000, "mono", "s16"
    codec.time_base = fractions.Fraction(1, 8_000)
    per_picture = 8_000 // fps
    times = np.arange(pictures * per_picture) / 8_000
    samples = (8_000 * np.sin(2 * np.pi * hz * times)).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8_000, 0
    data = b"".join(bytes(p) for p in codec.encode(frame)) + b"".join(bytes(p) for p in codec.encode(None))
    return [data[i * per_picture : (i + 1) * per_picture] for i in range(pictures)]


def aac_clip(pictures: int, *, hz: float = 440.0) -> list[bytes]:
    """A tone in AAC (ADTS frames of 1,024 samples at 8 kHz, mono), one frame for each picture."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream: Any = container.add_stream("aac", rate=8_000)
        stream.layout = "mono"
        for index in range(pictures):
            times = (np.arange(1_024) + index * 1_024) / 8_000
            samples = (0.3 * np.sin(2 * np.pi * hz * times)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8_000, index * 1_024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data, frames, at = buffer.getvalue(), [], 0
    while at + 7 <= len(data):
        length = (data[at + 3] & 0x03) << 11 | data[at + 4] << 3 | data[at + 5] >> 5
        frames.append(data[at : at + length])
        at += length
    return frames[:pictures] + [b""] * (pictures - len(frames))
