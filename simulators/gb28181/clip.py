"""A short H.264 clip made here (a moving test pattern), so the simulator and the tests need no media file."""

from __future__ import annotations

import fractions
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
