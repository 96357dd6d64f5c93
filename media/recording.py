"""Recording as evidence: a unit's media written as it arrived — encoded frames muxed into Matroska, never
decoded or re-encoded — in segments; each finished segment is hashed (SHA-256) and entered in the
hash-chained audit log, so a recording can later be verified against the chain (``recording verify``).

Frames come from the passthrough tap on the event loop and are gathered for one writer thread shared by
every recording of the process (muxing and file I/O stay off the loop). One thread, not one per session: the
server runs on one core, where the kernel shares the core out per thread, so forty writer threads busy at once
(each sealing its segment: the sessions of a restart start, and rotate, together) left the event loop a
fortieth of the core and stalled it for 100 ms and more. Against a single writer it keeps at least half. Each
session may have ``QUEUE_FRAMES`` frames waiting; beyond, its frames are dropped and counted instead of growing
memory. A segment starts on a video keyframe (the hub asks the unit for one when recording starts
and at each rotation) and is written as ``NNNNN.mkv.part``; when it is complete it is renamed to ``.mkv``
and hashed. G.711 (GB/T 28181 devices) is written as the 16-bit PCM its codes stand for (``media.g711``: a
lossless table lookup, since FFmpeg's Matroska muxer refuses G.711 itself); AAC as its ADTS frames, which the
muxer turns into raw AAC with its AudioSpecificConfig. A ``.part`` left by a crash is remuxed on the next
start into a playable ``.mkv`` (what was written survives; Matroska is readable without its index) and
audited as recovered.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import fractions
import hashlib
import logging
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
WRITE_EVERY = 0.05  # seconds between the writer thread's turns (what gathered meanwhile is written in one go)
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


_Frame = tuple[str, bytes, int, int, bool]  # kind, data, timestamp, clock rate, keyframe


class _Writer:
    """The one thread that writes every recording of the process: muxes frames, seals and hashes segments.

    The event loop only appends to a deque (no lock, no wake-up); the thread takes what has gathered every
    ``WRITE_EVERY``. Waking the writer for each frame (a queue's ``put``) cost the loop about a quarter of its
    time at 40 streams: on one core, every wake-up switched to the writer thread, which then needed the GIL the
    loop held. Recording is not live: a frame written 50 ms later is as good (a closing recording wakes the
    thread at once, as its session waits for the last segment). Started with the first recording
    and never stopped (20 empty polls a second cost nothing). Each recorder's work is done in the order it was
    queued, so a recording's frames and its end stay in order; one recorder's failure ends that recording only."""

    def __init__(self) -> None:
        self._work: collections.deque[tuple[SessionRecorder, _Frame | None]] = collections.deque()
        self._wake = threading.Event()  # a recording closing: its caller waits, so no need to wait for the turn
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, recorder: SessionRecorder, item: _Frame | None) -> None:
        """Queue a frame, or the end of a recording (None); from the event loop."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
                    self._thread.start()
        self._work.append((recorder, item))
        if item is None:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(WRITE_EVERY)
            self._wake.clear()  # before taking the work: a close queued meanwhile wakes the next turn at once
            while self._work:
                recorder, item = self._work.popleft()
                try:
                    if item is None:
                        recorder._end()
                    else:
                        recorder._take(item)
                except Exception:  # the thread serves every recording: one's bug must not end the others
                    log.exception("recording of %s/%s: the writer failed", recorder.unit_id, recorder.session_id)


_WRITER = _Writer()


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
        self._queued = 0  # frames handed to the writer (event loop only)
        self._written = 0  # of those, frames the writer has taken (writer thread only)
        self._pending: list[concurrent.futures.Future[None]] = []  # audit entries being written
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._closing = False
        self.dropped = 0  # frames lost to a full queue
        self.segments = 0
        # writer thread only:
        self._current: _Open | None = None
        self._index = 0
        self._failed = False
        private_dir(self.folder)  # evidence: the server's user only (0700 folders, 0600 segments)
        want_keyframe()

    def frame(self, kind: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool) -> None:
        if self._closing or self._queued - self._written >= QUEUE_FRAMES:
            self.dropped += 1
            return
        self._queued += 1
        _WRITER.put(self, (kind, data, timestamp, clock_rate, keyframe))

    async def close(self) -> None:
        """Finish the open segment (hashed and audited) once the frames queued before are written."""
        if not self._closing:
            self._closing = True
            _WRITER.put(self, None)
        await asyncio.wrap_future(self._ended)
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in self._pending), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("recording %s/%s: a segment was not audited", self.unit_id, self.session_id,
                          exc_info=result)  # fmt: skip

    # writer thread ----------------------------------------------------------------------------------
    def _take(self, item: _Frame) -> None:
        """One frame: into the open segment, sealing it first when it is due and this frame may start the next."""
        self._written += 1
        if self._failed:
            return
        kind, data, timestamp, clock_rate, keyframe = item
        if kind not in self.media:
            return
        try:
            has_video = "video" in self.media
            current = self._current
            if current is not None and time.monotonic() - current.opened >= self.segment_seconds:
                if not has_video or (kind == "video" and keyframe):
                    self._current = None
                    self._finish(current)
                    current = None
                elif not current.asked:  # rotate on the next keyframe, which the unit is asked for now
                    current.asked = True
                    self._loop.call_soon_threadsafe(self._want_keyframe)
            if current is None:
                if has_video and not (kind == "video" and keyframe):
                    return  # a segment must open on a keyframe to play on its own
                self._index += 1
                current = self._current = self._open(self._index, data if kind == "video" else None)
            self._mux(current, kind, data, timestamp, clock_rate, keyframe)
        except Exception:
            log.exception("recording of %s/%s failed", self.unit_id, self.session_id)
            self._failed = True
            self._seal_open()

    def _end(self) -> None:
        """The recording is closing: seal what is open, then let ``close`` go on."""
        try:
            self._seal_open()
        finally:
            self._ended.set_result(None)

    def _seal_open(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            try:
                self._finish(current)
            except Exception:
                log.exception("recording of %s/%s: the last segment was not sealed", self.unit_id, self.session_id)

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
