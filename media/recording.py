"""Recording as evidence: a unit's media written as it arrived — encoded frames muxed into Matroska, never
decoded or re-encoded — in segments; each finished segment is hashed (SHA-256) and entered in the
hash-chained audit log, so a recording can later be verified against the chain (``recording verify``).

Frames come from the passthrough tap on the event loop and go through a bounded queue to one writer thread
per session (muxing and file I/O stay off the loop; a full queue drops frames and counts them instead of
growing memory). A segment starts on a video keyframe (the hub asks the unit for one when recording starts
and at each rotation) and is written as ``NNNNN.mkv.part``; when it is complete it is renamed to ``.mkv``
and hashed. G.711 (GB/T 28181 devices) is written as the 16-bit PCM its codes stand for (``media.g711``: a
lossless table lookup, since FFmpeg's Matroska muxer refuses G.711 itself); AAC as its ADTS frames, which the
muxer turns into raw AAC with its AudioSpecificConfig. A ``.part`` left by a crash is remuxed on the next
start into a playable ``.mkv`` (what was written survives; Matroska is readable without its index) and
audited as recovered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import hashlib
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from core.private_files import private_dir, private_file
from media import g711

log = logging.getLogger(__name__)

QUEUE_FRAMES = 2_000  # about a minute of video and audio; beyond it frames are dropped and counted
GAP_MS = 500  # a pause of the video longer than this is reported as a gap of the recording
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48_000, 0, 0)  # RFC 7845 §5.1, stereo 48 kHz
CODECS = {"video/vp8": "vp8", "video/h264": "h264", "video/h265": "hevc", "audio/opus": "opus", "audio/aac": "aac",
          "audio/pcma": "pcm_s16le", "audio/pcmu": "pcm_s16le"}  # fmt: skip
AUDIO_RATES = {"audio/pcma": 8_000, "audio/pcmu": 8_000}  # the others' rate is in-band (Opus: 48 kHz; AAC: ADTS)


@dataclass(frozen=True)
class Segment:
    """A finished, hashed piece of a recording."""

    path: Path
    unit_id: str
    session_id: str
    index: int
    started_ms: int
    ended_ms: int
    size: int
    sha256: str
    video_frames: int
    audio_frames: int
    recovered: bool = False
    gaps: int = 0  # pauses of the video longer than GAP_MS (lost frames a bad link did not recover)
    longest_gap_ms: int = 0  # the longest pause between two recorded video frames, in media time
    dropped: int = 0  # frames the recorder could not keep up with (its queue was full)

    def details(self, root: Path) -> dict[str, Any]:
        return {"file": str(self.path.relative_to(root)), "unit_id": self.unit_id, "session_id": self.session_id,
                "index": self.index, "started_ms": self.started_ms, "ended_ms": self.ended_ms, "bytes": self.size,
                "sha256": self.sha256, "video_frames": self.video_frames, "audio_frames": self.audio_frames,
                "recovered": self.recovered, "gaps": self.gaps, "longest_gap_ms": self.longest_gap_ms,
                "dropped": self.dropped}  # fmt: skip


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1), None for an interframe."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack("<HH", frame[6:10])
    return width & 0x3FFF, height & 0x3FFF


@dataclass
class _Open:
    """The segment being written (writer thread only)."""

    container: Any
    path: Path
    index: int
    started_ms: int
    streams: dict[str, Any] = field(default_factory=dict)
    last_pts: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    opened: float = field(default_factory=time.monotonic)
    asked: bool = False  # a keyframe was requested to rotate on
    gaps: int = 0
    longest_gap_ms: int = 0
    dropped_before: int = 0  # the recorder's drop count when this segment opened


class SessionRecorder:
    """One unit session's recording. ``frame`` is called on the event loop for every encoded frame."""

    def __init__(
        self,
        root: Path,
        unit_id: str,
        session_id: str,
        media: dict[str, str],
        *,
        segment_seconds: float,
        on_segment: Callable[[Segment], Coroutine[Any, Any, None]],
        want_keyframe: Callable[[], None],
    ) -> None:
        self.root = root
        self.folder = root / unit_id / session_id
        self.unit_id, self.session_id = unit_id, session_id
        self.media = {kind: mime.lower() for kind, mime in media.items()}
        self.segment_seconds = segment_seconds
        self._on_segment = on_segment
        self._want_keyframe = want_keyframe
        self._loop = asyncio.get_running_loop()
        self._queue: queue.Queue[tuple[str, bytes, int, int, bool] | None] = queue.Queue(QUEUE_FRAMES)
        self._pending: list[concurrent.futures.Future[None]] = []  # audit entries being written
        self.dropped = 0  # frames lost to a full queue
        self.segments = 0
        self._thread = threading.Thread(target=self._write, name=f"recorder-{unit_id}", daemon=True)
        private_dir(self.folder)  # evidence: the server's user only (0700 folders, 0600 segments)
        self._thread.start()
        want_keyframe()

    def frame(self, kind: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool) -> None:
        try:
            self._queue.put_nowait((kind, data, timestamp, clock_rate, keyframe))
        except queue.Full:
            self.dropped += 1

    async def close(self) -> None:
        """Finish the open segment (hashed and audited) and stop the writer."""
        await asyncio.to_thread(self._queue.put, None)
        await asyncio.to_thread(self._thread.join)
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in self._pending), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("recording %s/%s: a segment was not audited", self.unit_id, self.session_id,
                          exc_info=result)  # fmt: skip

    # writer thread ----------------------------------------------------------------------------------
    def _write(self) -> None:
        current: _Open | None = None
        index = 0
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                kind, data, timestamp, clock_rate, keyframe = item
                if kind not in self.media:
                    continue
                has_video = "video" in self.media
                if current is not None and time.monotonic() - current.opened >= self.segment_seconds:
                    if not has_video or (kind == "video" and keyframe):
                        self._finish(current)
                        current = None
                    elif not current.asked:  # rotate on the next keyframe, which the unit is asked for now
                        current.asked = True
                        self._loop.call_soon_threadsafe(self._want_keyframe)
                if current is None:
                    if has_video and not (kind == "video" and keyframe):
                        continue  # a segment must open on a keyframe to play on its own
                    index += 1
                    current = self._open(index, data if kind == "video" else None)
                self._mux(current, kind, data, timestamp, clock_rate, keyframe)
        except Exception:
            log.exception("recording of %s/%s failed", self.unit_id, self.session_id)
        finally:
            if current is not None:
                self._finish(current)

    def _open(self, index: int, keyframe: bytes | None) -> _Open:
        path = private_file(self.folder / f"{index:05d}.mkv.part")
        container = av.open(str(path), mode="w", format="matroska")
        segment = _Open(container, path, index, int(time.time() * 1000), dropped_before=self.dropped)
        for kind, mime in self.media.items():
            rate = 90_000 if kind == "video" else AUDIO_RATES.get(mime, 48_000)
            stream: Any = container.add_stream(CODECS[mime], rate=rate)
            if mime == "video/vp8" and keyframe is not None and (size := vp8_size(keyframe)):
                stream.width, stream.height = size
            elif kind == "video":
                stream.width, stream.height = 640, 480  # H.264 and H.265 carry their size in-band (SPS)
            if mime == "audio/opus":
                stream.codec_context.extradata = OPUS_HEAD
            elif mime in g711.TABLES:
                stream.codec_context.layout = "mono"
            segment.streams[kind] = stream
        return segment

    def _mux(self, segment: _Open, kind: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool) -> None:
        previous = segment.last_pts.get(kind, -1)
        if timestamp <= previous:
            return  # a repeated or reordered frame: Matroska needs increasing timestamps per track
        if kind == "video" and previous >= 0:
            pause_ms = (timestamp - previous) * 1000 // clock_rate
            segment.longest_gap_ms = max(segment.longest_gap_ms, pause_ms)
            segment.gaps += pause_ms > GAP_MS
        segment.last_pts[kind] = timestamp
        mime = self.media[kind]
        packet = av.Packet(g711.to_linear(mime, data) if mime in g711.TABLES else data)
        packet.stream = segment.streams[kind]
        packet.pts = packet.dts = timestamp
        packet.time_base = fractions.Fraction(1, clock_rate)
        packet.is_keyframe = keyframe or kind == "audio"
        segment.container.mux(packet)
        segment.frames[kind] += 1

    def _finish(self, segment: _Open) -> None:
        segment.container.close()
        final = segment.path.with_suffix("")  # NNNNN.mkv
        segment.path.rename(final)
        done = Segment(final, self.unit_id, self.session_id, segment.index, segment.started_ms,
                       int(time.time() * 1000), final.stat().st_size, sha256_of(final), segment.frames["video"],
                       segment.frames["audio"], gaps=segment.gaps, longest_gap_ms=segment.longest_gap_ms,
                       dropped=self.dropped - segment.dropped_before)  # fmt: skip
        self.segments += 1
        self._pending.append(asyncio.run_coroutine_threadsafe(self._on_segment(done), self._loop))


def recover(root: Path) -> list[Segment]:
    """Remux every segment a crash left unfinished (``*.mkv.part``) into a playable ``.mkv``; blocking."""
    recovered = []
    for part in sorted(root.glob("*/*/*.mkv.part")):
        final = part.with_suffix("")
        frames = {"video": 0, "audio": 0}
        try:
            private_file(final)
            with av.open(str(part)) as source, av.open(str(final), mode="w", format="matroska") as target:
                mapping: dict[int, Any] = {}
                stream: Any
                for stream in source.streams:
                    if stream.type not in ("video", "audio"):
                        continue
                    out: Any = target.add_stream(
                        stream.codec_context.name, rate=getattr(stream, "rate", None) or 90_000
                    )
                    if stream.type == "video":
                        out.width, out.height = stream.width or 640, stream.height or 480
                    if stream.type == "audio" and stream.codec_context.name.startswith("pcm_"):
                        out.codec_context.layout = stream.codec_context.layout.name  # G.711 as PCM: mono
                    if stream.codec_context.extradata:
                        out.codec_context.extradata = stream.codec_context.extradata
                    mapping[stream.index] = out
                for packet in source.demux():
                    if packet.dts is None or packet.stream.index not in mapping:
                        continue
                    packet.stream = mapping[packet.stream.index]
                    target.mux(packet)
                    frames[packet.stream.type] += 1
        except (av.error.FFmpegError, OSError) as exc:
            log.error("recording %s cannot be recovered: %s", part, exc)
            final.unlink(missing_ok=True)
            continue
        part.unlink()
        unit_id, session_id = part.parent.parent.name, part.parent.name
        stat = final.stat()
        recovered.append(Segment(final, unit_id, session_id, int(part.name.split(".")[0]), int(stat.st_mtime * 1000),
                                 int(stat.st_mtime * 1000), stat.st_size, sha256_of(final), frames["video"],
                                 frames["audio"], recovered=True))  # fmt: skip
        log.warning("recording %s recovered after an unclean stop (%d frames)", final, sum(frames.values()))
    return recovered
