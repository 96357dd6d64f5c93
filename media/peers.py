"""Session objects: each owns its transport, tracks and tasks, and frees them in an idempotent ``close()``.

As in aiortc, closing is the object's own business and safe to call twice (the second call waits for the
first); the driver (``media.sessions.MediaHub``) decides when, takes the session out of the table, and
writes the audit entry the session describes (``end_entry``). No isinstance dispatch: each kind says what
ends with it (``dependents``) and what to record.

A ``Publisher`` is a unit's source, whatever carries it: its ``link`` (a ``PublisherLink``) is WebRTC for
WHIP units (``WebRtcLink``) or anything else that can tell its state, ask the unit for a keyframe and close
(a GB/T 28181 PS-over-RTP receiver). Whoever receives the unit's encoded frames calls ``Publisher.frame``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcdatachannel import RTCDataChannel

from media import passthrough
from media.frames import Feed, KeyframeRequests, is_keyframe
from media.recording import SessionRecorder
from media.table import Session
from media.trickle import new_etag
from persistence.models import Unit

log = logging.getLogger(__name__)

TELEMETRY_INBOX = 64  # data-channel messages waiting for the tracker; past this the unit is told to slow down

#: An audit entry a session asks for when it ends: (action, details).
AuditEntry = tuple[str, dict[str, Any]]


class PublisherLink(Protocol):
    """How a unit's encoded media reaches this process."""

    @property
    def state(self) -> str:
        """``RTCPeerConnection.connectionState`` words: new, connecting, connected, failed, closed."""

    async def request_keyframe(self) -> int | None:
        """Ask the unit for a keyframe: requests sent (0: nothing heard from it yet), None if it has no video."""

    async def close(self) -> None: ...


class WebRtcLink:
    """A WHIP unit's peer connection as a ``PublisherLink``."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.receivers: dict[str, RTCRtpReceiver] = {}  # kind → the unit's receiver

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self.pc

    async def request_keyframe(self) -> int | None:
        video = self.receivers.get("video")
        return None if video is None else await passthrough.request_keyframe(video)

    async def close(self) -> None:
        await self.pc.close()


@dataclass(eq=False, kw_only=True)
class PeerSession(Session):
    """A session with something to free; ``close()`` frees it once, whoever calls it and how often."""

    #: The entity-tag of the session's ICE state (RFC 9725 §4.3.1): a PATCH must name it; a restart changes it.
    etag: str = field(default_factory=new_etag)
    _closed: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The WebRTC peer connection, if this session has one (trickle ICE and restarts act on it)."""
        return None

    async def close(self) -> None:
        if self._closed is None:
            self._closed = asyncio.ensure_future(self._free())
        await asyncio.shield(self._closed)

    async def _free(self) -> None:
        """Free what this session holds (each kind its own)."""

    def dependents(self) -> list[AnySession]:
        """Sessions that end with this one."""
        return []

    def end_entry(self, reason: str, ended_ms: int) -> AuditEntry | None:
        """The audit entry its end needs, if any."""
        return None

    def dropped(self) -> tuple[str, int] | None:
        """Frames this session dropped so far and where (``viewer``: a feed behind; ``recorder``), for metrics."""
        return None


@dataclass(eq=False, kw_only=True)
class Publisher(PeerSession):
    """A unit's source: what it sends, who watches, and the tasks it owns."""

    unit: Unit
    link: PublisherLink
    media: dict[str, str]  # kind → mime type
    keyframes: KeyframeRequests
    fanout: dict[str, list[passthrough.EncodedTrack]] = field(default_factory=dict)
    viewers: dict[str, ViewerSession] = field(default_factory=dict)
    keyframe_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: asyncio.Queue[tuple[RTCDataChannel, str | bytes]] = field(
        default_factory=lambda: asyncio.Queue(TELEMETRY_INBOX)
    )
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    decoded_frames: int = 0  # frames aiortc decoded anyway: must stay 0
    talk: passthrough.EncodedTrack | None = None  # audio to the unit (talkback), when its offer can play it
    recorder: SessionRecorder | None = None  # evidence recording, while it runs
    talker: TalkSession | None = None  # the one operator talking to the unit now
    recorder_dropped: int = 0  # frames dropped by this session's finished recordings
    #: Recorded whenever ``record_sessions`` is set (units); a room participant only while its room records.
    auto_record: bool = True
    #: Kinds neither forwarded nor recorded now: a room participant's audio while the host mutes them.
    silenced: set[str] = field(default_factory=set)
    #: Told of each frame that is forwarded, ``(kind, data, now)``: a room's who-speaks detector reads it.
    listener: Callable[[str, bytes, float], None] | None = None

    @property
    def state(self) -> str:
        return self.link.state

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self.link.pc if isinstance(self.link, WebRtcLink) else None

    def want_keyframe(self) -> None:
        self.keyframes.want()
        self.keyframe_wanted.set()

    def frame(self, kind: str, mime: str, data: bytes, timestamp: int, clock_rate: int, now: float) -> None:
        """One encoded frame of the unit: to the recorder and every viewer's feed, as it came."""
        self.last_media = now
        if kind in self.silenced:
            return
        if self.listener is not None:
            self.listener(kind, data, now)
        keyframe = kind == "video" and is_keyframe(mime, data)
        if self.recorder is not None:
            self.recorder.frame(kind, data, timestamp, clock_rate, keyframe)
        tracks = self.fanout.get(kind)
        if not tracks:
            return
        packet = passthrough.make_packet(data, timestamp, clock_rate)
        need_keyframe = False
        for track in tracks:
            need_keyframe |= track.feed.push(packet, keyframe=keyframe)
            track.wake()
        if need_keyframe:
            self.want_keyframe()

    def watch(self, viewer: ViewerSession) -> None:
        """A viewer's tracks join the fan-out; it starts at the next keyframe, asked for now."""
        self.viewers[viewer.id] = viewer
        for kind, track in viewer.tracks.items():
            self.fanout.setdefault(kind, []).append(track)
        self.want_keyframe()

    def unwatch(self, viewer: ViewerSession) -> None:
        self.viewers.pop(viewer.id, None)
        for kind, track in viewer.tracks.items():
            if track in self.fanout.get(kind, []):
                self.fanout[kind].remove(track)

    async def keyframe_requests(self) -> None:
        """Ask the unit for keyframes when viewers need one, at most as often as ``keyframes`` allows."""
        while True:
            delay = self.keyframes.due()
            if delay is None:
                self.keyframe_wanted.clear()
                await self.keyframe_wanted.wait()
            elif delay > 0:
                await asyncio.sleep(delay)
            else:
                sent = await self.link.request_keyframe()
                self.keyframes.sent()
                if sent == 0:  # nothing heard yet: ask again later
                    self.keyframes.want()

    def own(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run a task for the life of the session (cancelled and awaited by ``close``)."""
        task = asyncio.create_task(work, name=f"media-{what}-{self.id}")
        self.tasks.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self.tasks.discard)

    def dependents(self) -> list[AnySession]:
        return [*self.viewers.values(), *([self.talker] if self.talker is not None else [])]

    async def _free(self) -> None:
        if self.talk is not None:
            self.talk.stop()
        pending = list(self.tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.link.close()
        await self.stop_recorder()

    async def stop_recorder(self) -> bool:
        """Finish the recording (its last segment sealed); False if none ran."""
        if self.recorder is None:
            return False
        recorder, self.recorder = self.recorder, None
        await recorder.close()
        self.recorder_dropped += recorder.dropped
        return True

    def dropped(self) -> tuple[str, int]:
        return "recorder", self.recorder_dropped + (0 if self.recorder is None else self.recorder.dropped)


@dataclass(eq=False, kw_only=True)
class ViewerSession(PeerSession):
    """An operator's WHEP view: the unit's encoded tracks, forwarded to one peer connection."""

    pc: RTCPeerConnection
    publisher: Publisher
    tracks: dict[str, passthrough.EncodedTrack] = field(default_factory=dict)
    started_ms: int = 0

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self.pc

    def details(self) -> dict[str, Any]:
        unit = self.publisher.unit
        return {
            "unit_id": unit.id,
            "court_id": unit.court_id,
            "session_id": self.id,
            "username": None if self.owner is None else self.owner.username,
            "media": sorted(self.tracks),
            "started_ms": self.started_ms,
        }

    def end_entry(self, reason: str, ended_ms: int) -> AuditEntry:
        return "media.view.end", self.details() | {"ended_ms": ended_ms, "reason": reason}

    def dropped(self) -> tuple[str, int]:
        return "viewer", sum(track.feed.dropped for track in self.tracks.values())

    async def _free(self) -> None:
        self.publisher.unwatch(self)
        for track in self.tracks.values():
            track.stop()
        await self.pc.close()


@dataclass(eq=False, kw_only=True)
class TalkSession(PeerSession):
    """An operator's push-to-talk: their microphone, forwarded encoded to one unit."""

    pc: RTCPeerConnection
    publisher: Publisher
    started_ms: int = 0
    frames: int = 0  # encoded audio frames forwarded to the unit

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self.pc

    def frame(self, data: bytes, timestamp: int, clock_rate: int) -> None:
        """One encoded audio frame of the operator: to the unit, while this is its talker."""
        talk = self.publisher.talk
        if talk is None or self.publisher.talker is not self:
            return
        self.frames += 1
        talk.feed.push(passthrough.make_packet(data, timestamp, clock_rate), keyframe=False)
        talk.wake()

    def details(self) -> dict[str, Any]:
        unit = self.publisher.unit
        return {"unit_id": unit.id, "court_id": unit.court_id, "session_id": self.id,
                "username": None if self.owner is None else self.owner.username,
                "started_ms": self.started_ms}  # fmt: skip

    def end_entry(self, reason: str, ended_ms: int) -> AuditEntry:
        return "media.talk.end", self.details() | {"ended_ms": ended_ms, "frames": self.frames, "reason": reason}

    async def _free(self) -> None:
        if self.publisher.talker is self:
            self.publisher.talker = None
        await self.pc.close()


#: Every kind of session; each has a transport ``state`` the supervisor reads.
AnySession = Publisher | ViewerSession | TalkSession


def talk_feed(capacity: int) -> passthrough.EncodedTrack:
    """The audio track that carries talkback to a unit (ungated: audio has no keyframes)."""
    feed: Feed[passthrough.EncodedPacket] = Feed(capacity, gated=False)
    return passthrough.EncodedTrack("audio", feed)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("media: task %s failed", task.get_name(), exc_info=task.exception())
