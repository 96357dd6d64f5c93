"""Encoded media frames as the unit sent them, and the per-viewer feed that carries them. Pure.

A frame is one picture (or 20 ms of audio) reassembled from RTP, still compressed. Each viewer has a
bounded ``Feed``: video starts at a keyframe, and a viewer that falls behind drops what it holds and
waits for the next keyframe (asking the unit for one) rather than slowing the unit or other viewers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

H264_IDR = 5
H265_IRAP = range(16, 24)  # BLA, IDR and CRA pictures (ITU-T H.265 Table 7-1)


def is_keyframe(mime: str, data: bytes) -> bool:
    """Whether a video frame can be decoded on its own.

    VP8 (RFC 6386 §9.1): the frame tag's first bit is 0 for a key frame, which then carries the start
    code 9d 01 2a. H.264 in Annex B form (as aiortc depacketises RFC 6184): an IDR slice (NAL type 5).
    H.265 in Annex B form (GB/T 28181 devices' PS): an IRAP picture (NAL types 16-23). Audio frames are all
    independent.
    """
    kind, _, codec = mime.lower().partition("/")
    if kind == "audio":
        return True
    if codec == "vp8":
        return len(data) >= 10 and data[0] & 0x01 == 0 and data[3:6] == b"\x9d\x01\x2a"
    if codec == "h264":
        return any(nal and nal[0] & 0x1F == H264_IDR for nal in nal_units(data))
    if codec == "h265":
        return any(nal and (nal[0] >> 1) & 0x3F in H265_IRAP for nal in nal_units(data))
    return False


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (separated by 00 00 01 or 00 00 00 01 start codes)."""
    units = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        if end == -1:
            units.append(data[begin:])
            break
        units.append(data[begin : end - 1] if data[end - 1] == 0 else data[begin:end])
        start = end
    return units


class Feed(Generic[T]):
    """A viewer's queue of one kind of media.

    ``gated`` feeds (video) hold nothing until a keyframe: a viewer joining mid-stream, or one that
    overflowed, would otherwise get pictures it cannot decode. ``push`` answers whether the feed is
    waiting for a keyframe, so the caller can ask the unit for one.
    """

    def __init__(self, capacity: int, *, gated: bool) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._gated = gated
        self.waiting = gated
        self.dropped = 0  # frames thrown away: skipped while waiting or flushed on overflow

    def push(self, item: T, *, keyframe: bool) -> bool:
        """Queue one frame; True when the feed needs a keyframe."""
        if self.waiting:
            if not keyframe:
                self.dropped += 1
                return True
            self.waiting = False
        if len(self._items) >= self._capacity:
            if self._gated:  # a later picture needs the ones before it: start over at a keyframe
                self.dropped += len(self._items) + (0 if keyframe else 1)
                self._items.clear()
                if not keyframe:
                    self.waiting = True
                    return True
            else:  # audio: the oldest 20 ms go
                self._items.popleft()
                self.dropped += 1
        self._items.append(item)
        return False

    def pop(self) -> T | None:
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class KeyframeRequests:
    """Pace keyframe requests (RTCP PLI, RFC 4585 §6.3.1) to a unit: at once, then at most one per interval.

    ``want`` records a request; ``due`` answers how long to wait before sending one (0: now), or None
    when nothing is wanted; ``sent`` records that one went out.
    """

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._wanted = False
        self._last: float | None = None

    def want(self) -> None:
        self._wanted = True

    def due(self) -> float | None:
        if not self._wanted:
            return None
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self._interval - self._clock())

    def sent(self) -> None:
        self._wanted = False
        self._last = self._clock()


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One kind of media a unit sends, as negotiated."""

    kind: str
    mime: str
