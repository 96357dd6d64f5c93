"""Media sessions of one server process: units publishing over WHIP (RFC 9725), operators viewing over WHEP.

The hub owns every ``RTCPeerConnection``: it counts them against a cap, closes those that never connect
or whose unit went silent (one supervisor task), and closes all of them on shutdown. A unit's encoded
frames reach each viewer's bounded feed untouched (``media.passthrough``); its telemetry data channel
goes through the tracker like the WebSocket (``media.telemetry_channel``). Each view is recorded when
it starts and when it ends (who, which unit, from when to when); a view that cannot be recorded is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NewType, Protocol

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from cluster.port import Coordinator, media_lease
from config.settings import MediaSettings
from core.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)
from core.ids import CourtId, UnitId, UserId
from media import passthrough, telemetry_channel
from media.evidence import SEGMENT_ACTION
from media.frames import Feed, KeyframeRequests, is_keyframe
from media.ice import restrict_host_addresses
from media.offers import (
    OfferError,
    check_transport,
    parse_offer,
    plan_publish,
    plan_talk,
    plan_view,
    prefer_dtls_server,
    talks_back,
)
from media.recording import Segment, SessionRecorder, recover
from persistence.models import Unit

log = logging.getLogger(__name__)

SessionId = NewType("SessionId", str)

SUPERVISE_EVERY = 0.25  # seconds between checks of connection state, ICE deadline and silence
KEYFRAME_INTERVAL = 1.0  # at most one PLI a second to a unit (the first one at once)
TELEMETRY_INBOX = 64  # data-channel messages waiting for the tracker; past this the unit is told to slow down


class ViewRecorder(Protocol):
    """Where views are recorded (the audit log's ``record``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, details: dict[str, Any] | None = None
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: UserId
    username: str
    #: The viewer's session (its token's SHA-256) and when it expires: logging out, revoking or expiring
    #: it ends the view and the talkback (``end_views``).
    session: str | None = None
    expires_at: datetime | None = None
    court_id: CourtId | None = None  # the user's court: its users' sessions together are capped


@dataclass(eq=False)
class _Peer:
    id: SessionId
    pc: RTCPeerConnection
    created: float
    connected_at: float | None = None
    closing: asyncio.Task[None] | None = None


@dataclass(eq=False)
class Publisher(_Peer):
    """A unit's WHIP session: what it sends, who watches, and the tasks it owns."""

    unit: Unit | None = None
    media: dict[str, str] = field(default_factory=dict)  # kind → mime type
    receivers: dict[str, RTCRtpReceiver] = field(default_factory=dict)
    fanout: dict[str, list[passthrough.EncodedTrack]] = field(default_factory=dict)
    viewers: dict[SessionId, ViewerSession] = field(default_factory=dict)
    last_media: float = 0.0
    keyframes: KeyframeRequests | None = None
    keyframe_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: asyncio.Queue[tuple[RTCDataChannel, str | bytes]] = field(
        default_factory=lambda: asyncio.Queue(TELEMETRY_INBOX)
    )
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    decoded_frames: int = 0  # frames aiortc decoded anyway: must stay 0
    talk: passthrough.EncodedTrack | None = None  # audio to the unit (talkback), when its offer can play it
    recorder: SessionRecorder | None = None  # evidence recording, while it runs
    talker: TalkSession | None = None  # the one operator talking to the unit now

    def want_keyframe(self) -> None:
        if self.keyframes is not None:
            self.keyframes.want()
            self.keyframe_wanted.set()


@dataclass(eq=False)
class ViewerSession(_Peer):
    viewer: Viewer | None = None
    publisher: Publisher | None = None
    tracks: dict[str, passthrough.EncodedTrack] = field(default_factory=dict)
    started_ms: int = 0


@dataclass(eq=False)
class TalkSession(_Peer):
    """An operator's push-to-talk: their microphone, forwarded encoded to one unit."""

    viewer: Viewer | None = None
    publisher: Publisher | None = None
    started_ms: int = 0
    frames: int = 0  # encoded audio frames forwarded to the unit


@dataclass(slots=True)
class MediaCounts:
    """Totals since this process started, for the metrics: plain integers bumped where frames pass, and the
    drop counts of sessions that ended (those of live ones are summed when scraped)."""

    frames_received: int = 0  # encoded frames from units
    frames_forwarded: int = 0  # encoded frames handed to viewers (one per viewer)
    viewer_drops_ended: int = 0  # frames viewers skipped (behind, waiting for a keyframe), of ended views
    recorder_drops_ended: int = 0  # frames recorders could not keep up with, of ended recordings
    recorded_bytes: int = 0  # evidence written, in finished segments
    segments_sealed: int = 0  # finished segments whose SHA-256 went into the audit chain


class MediaHub:
    """Every media peer connection of this process."""

    def __init__(
        self,
        settings: MediaSettings,
        ingest: telemetry_channel.Ingest,
        views: ViewRecorder,
        *,
        recordings: Path | None = None,
        cluster: Coordinator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._cluster = cluster  # tells the other processes that a unit's session lives here (media_lease)
        self.recordings = recordings  # where recordings go (None: nothing is recorded)
        self._ingest = ingest
        self._views = views
        self._clock = clock
        self._pcs: set[RTCPeerConnection] = set()
        self._owners: dict[RTCPeerConnection, Viewer] = {}  # whose view or talkback each one is (caps per user/court)
        self._publishers: dict[SessionId, Publisher] = {}
        self._by_unit: dict[UnitId, Publisher] = {}
        self._pending: dict[UnitId, Publisher] = {}  # a unit's new session, until connected (one per unit)
        self._viewers: dict[SessionId, ViewerSession] = {}
        self._talkers: dict[SessionId, TalkSession] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._unavailable: str | None = None
        self.counts = MediaCounts()

    # Life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        restrict_host_addresses(self._settings.ice_addresses)
        problems = await passthrough.check_internals()
        if problems:
            self._unavailable = "media passthrough does not work with this aiortc: " + "; ".join(problems)
            log.error("media: %s", self._unavailable)
        self._supervisor = asyncio.create_task(self._supervise(), name="media-supervisor")
        if self.recordings is not None:
            for segment in await asyncio.to_thread(recover, self.recordings):
                await self._segment_done(segment)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        for viewer in list(self._viewers.values()):
            self._close_later(viewer, "server shutting down")
        for publisher in list(self._publishers.values()):
            self._close_later(publisher, "server shutting down")
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def peer_connections(self) -> int:
        """Peer connections alive (negotiating, live or being closed)."""
        return len(self._pcs)

    def session_counts(self) -> dict[str, int]:
        """Sessions by role: units publishing (WHIP), viewers (WHEP), operators talking back."""
        return {"unit": len(self._publishers), "viewer": len(self._viewers), "talkback": len(self._talkers)}

    def frames_dropped(self) -> dict[str, int]:
        """Frames dropped since start, by where: skipped by viewers that fell behind, or by recorders."""
        viewers = sum(t.feed.dropped for v in self._viewers.values() for t in v.tracks.values())
        recorders = sum(p.recorder.dropped for p in self._publishers.values() if p.recorder is not None)
        return {
            "viewer": self.counts.viewer_drops_ended + viewers,
            "recorder": self.counts.recorder_drops_ended + recorders,
        }

    def streaming_units(self) -> set[UnitId]:
        return set(self._by_unit)

    def publisher(self, unit_id: UnitId) -> Publisher | None:
        found = self._by_unit.get(unit_id)
        return found if found is not None and found.closing is None else None

    def viewers_of(self, unit_id: UnitId) -> list[ViewerSession]:
        publisher = self.publisher(unit_id)
        return [] if publisher is None else list(publisher.viewers.values())

    # WHIP -------------------------------------------------------------------------------------------

    async def publish(self, unit: Unit, offer_sdp: str) -> tuple[SessionId, str]:
        """Answer a unit's WHIP offer; a unit that publishes again replaces its previous session."""
        plan = self._plan(offer_sdp, lambda offer: plan_publish(offer))
        talkback = talks_back(parse_offer(offer_sdp))
        publisher = Publisher(SessionId(secrets.token_urlsafe(16)), self._new_pc(), self._clock(), unit=unit,
                              media=plan, keyframes=KeyframeRequests(KEYFRAME_INTERVAL, self._clock))  # fmt: skip
        pc = publisher.pc
        try:
            for kind, mime in plan.items():
                if kind == "audio" and talkback:  # the unit plays what the centre says on the same section
                    feed: Feed[passthrough.EncodedPacket] = Feed(self._settings.viewer_queue_frames, gated=False)
                    publisher.talk = passthrough.EncodedTrack("audio", feed)
                    transceiver = pc.addTransceiver(publisher.talk, direction="sendrecv")
                else:
                    transceiver = pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(_capabilities(kind, mime))
                passthrough.tap_receiver(transceiver.receiver, self._frame_sink(publisher, kind))
                publisher.receivers[kind] = transceiver.receiver
                publisher.fanout[kind] = []
            pc.on("track", lambda track: self._own(publisher, self._drain(publisher, track), "drain"))
            pc.on("datachannel", lambda channel: self._accept_channel(publisher, channel))
            answer = await self._answer(pc, offer_sdp)
        except BaseException:
            await self._discard(publisher)
            raise
        self._own(publisher, self._telemetry(publisher), "telemetry")
        self._own(publisher, self._keyframe_requests(publisher), "keyframes")
        self._publishers[publisher.id] = publisher
        previous = self._by_unit.get(unit.id)
        working = previous is not None and previous.closing is None and previous.connected_at is not None
        if working or (previous is None and await self._streams_elsewhere(unit.id)):
            # The unit streams now (here or on another process): the new session takes over only once
            # connected (_promote); until then the old one keeps streaming, recording and serving its
            # viewers, and stays if this one fails.
            stale, self._pending[unit.id] = self._pending.get(unit.id), publisher
            pc.on(
                "connectionstatechange", lambda: self._promote(publisher) if pc.connectionState == "connected" else None
            )
            log.info("media: unit %s offered a new session %s (%s); it replaces %s once connected",
                     unit.id, publisher.id, plan, "another process's" if previous is None else previous.id)  # fmt: skip
            if stale is not None:
                await self._end(stale, "replaced by a newer offer of the unit")
            return publisher.id, answer
        if self._settings.record_sessions:
            self._start_recorder(publisher)
        self._by_unit[unit.id] = publisher
        log.info("media: unit %s publishing (session %s, %s)", unit.id, publisher.id, plan)
        await self._announce(unit.id, here=True)
        if previous is not None:
            await self._end(previous, "replaced by a new session of the unit")
        return publisher.id, answer

    async def _streams_elsewhere(self, unit_id: UnitId) -> bool:
        """Another process holds the unit's media lease (its session lives there). Redis away: not known, no."""
        if self._cluster is None or not self._cluster.shared:
            return False
        try:
            holder = await self._cluster.holder(media_lease(unit_id))
        except Exception as exc:
            log.warning("media: unit %s: cannot tell whether it streams elsewhere (%s)", unit_id, exc)
            return False
        return holder is not None and holder != self._cluster.node_id

    def _promote(self, publisher: Publisher) -> None:
        """A unit's new session connected (or its old one ended): it becomes the unit's session, carrying on
        the recording, and the old one is closed with its viewers (they watch again, on the new one)."""
        unit_id = _unit_id(publisher)
        if self._pending.get(unit_id) is not publisher or publisher.closing is not None:
            return
        del self._pending[unit_id]
        previous = self._by_unit.get(unit_id)
        self._by_unit[unit_id] = publisher
        if self._settings.record_sessions or (previous is not None and previous.recorder is not None):
            self._start_recorder(publisher)
        log.info("media: unit %s session %s connected and takes over", unit_id, publisher.id)
        self._own(publisher, self._announce(unit_id, here=True), "announce")
        if previous is not None:
            self._close_later(previous, "replaced by a new session of the unit")

    async def _announce(self, unit_id: UnitId, *, here: bool) -> None:
        """Take (or give up) the unit's media lease, so viewers reaching another process are sent here.
        Without the lease (Redis away) the session still works for viewers reaching this process."""
        if self._cluster is None:
            return
        try:
            if here:
                await self._cluster.take(media_lease(unit_id))
            else:
                await self._cluster.release(media_lease(unit_id))
        except Exception as exc:
            log.warning("media: unit %s: could not tell the other processes (%s)", unit_id, exc)

    async def end_unit(self, unit_id: UnitId, reason: str) -> bool:
        """End the unit's session (and its viewers and talkback), e.g. when its credential is revoked."""
        pending = self._pending.pop(unit_id, None)  # not promoted when the working one ends
        if pending is not None:
            await self._end(pending, reason)
        publisher = self.publisher(unit_id)
        if publisher is None:
            return pending is not None
        await self._end(publisher, reason)
        return True

    def viewers(self) -> list[Viewer]:
        """Who is viewing or talking now (on this process)."""
        peers: list[ViewerSession | TalkSession] = [*self._viewers.values(), *self._talkers.values()]
        return [peer.viewer for peer in peers if peer.viewer is not None and peer.closing is None]

    async def end_views(self, match: Callable[[Viewer], bool], reason: str) -> int:
        """End every WHEP view and talkback whose viewer matches, e.g. a logged-out or revoked session's."""
        candidates: list[ViewerSession | TalkSession] = [*self._viewers.values(), *self._talkers.values()]
        peers = [p for p in candidates if p.viewer is not None and p.closing is None and match(p.viewer)]
        await asyncio.gather(*(self._end(peer, reason) for peer in peers))
        return len(peers)

    async def end_publish(self, unit_id: UnitId, session_id: SessionId) -> None:
        publisher = self._publishers.get(session_id)
        if publisher is None or publisher.unit is None or publisher.unit.id != unit_id:
            raise NotFound(f"no WHIP session {session_id} of unit {unit_id}")
        await self._end(publisher, "ended by the unit")

    # WHEP -------------------------------------------------------------------------------------------

    async def view(self, viewer: Viewer, unit_id: UnitId, offer_sdp: str) -> tuple[SessionId, str]:
        """Answer a viewer's WHEP offer with the unit's live media, forwarded as the unit encoded it."""
        self._check_available()
        publisher = self.publisher(unit_id)
        if publisher is None:
            raise Conflict(f"unit {unit_id} is not streaming")
        plan = self._plan(offer_sdp, lambda offer: plan_view(offer, publisher.media))
        session = ViewerSession(SessionId(secrets.token_urlsafe(16)), self._new_pc(viewer), self._clock(),
                                viewer=viewer, publisher=publisher)  # fmt: skip
        pc = session.pc
        try:
            for kind, mime in plan.items():
                feed: Feed[passthrough.EncodedPacket] = Feed(self._settings.viewer_queue_frames, gated=kind == "video")
                track = passthrough.EncodedTrack(kind, feed)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(_capabilities(kind, mime))
                passthrough.on_keyframe_request(transceiver.sender, publisher.want_keyframe)
                session.tracks[kind] = track
            answer = await self._answer(pc, offer_sdp)
            if publisher.closing is not None:
                raise Conflict(f"unit {unit_id} stopped streaming")
            session.started_ms = int(time.time() * 1000)
            try:
                await self._views.record("media.view.start", viewer.user_id, details=self._view_details(session))
            except Exception as exc:
                log.exception("media: cannot record the start of a view of %s", unit_id)
                raise ServiceUnavailable("the view cannot be recorded in the audit log; try again") from exc
        except BaseException:
            await self._discard(session)
            raise
        self._viewers[session.id] = session
        publisher.viewers[session.id] = session
        for kind, track in session.tracks.items():
            publisher.fanout[kind].append(track)
        publisher.want_keyframe()
        log.info("media: %s viewing unit %s (session %s)", viewer.username, unit_id, session.id)
        return session.id, answer

    # Recording --------------------------------------------------------------------------------------

    def start_recording(self, unit_id: UnitId, reason: str) -> bool:
        """Record the unit's live session from now (an operator's choice, or an SOS); False if it is not
        streaming. Already recording: nothing changes."""
        publisher = self.publisher(unit_id)
        if publisher is None:
            return False
        if publisher.recorder is None:
            log.info("media: recording unit %s (%s)", unit_id, reason)
            self._start_recorder(publisher)
        return publisher.recorder is not None

    async def stop_recording(self, unit_id: UnitId) -> bool:
        """Finish the unit's recording (its last segment hashed and audited); False if none was running."""
        publisher = self.publisher(unit_id)
        if publisher is None or publisher.recorder is None:
            return False
        recorder, publisher.recorder = publisher.recorder, None
        await recorder.close()
        self.counts.recorder_drops_ended += recorder.dropped
        return True

    def recording(self, unit_id: UnitId) -> bool:
        publisher = self.publisher(unit_id)
        return publisher is not None and publisher.recorder is not None

    def _start_recorder(self, publisher: Publisher) -> None:
        if self.recordings is None or publisher.unit is None:
            return
        publisher.recorder = SessionRecorder(
            self.recordings, publisher.unit.id, publisher.id, publisher.media,
            segment_seconds=self._settings.segment_seconds, on_segment=self._segment_done,
            want_keyframe=publisher.want_keyframe,
        )  # fmt: skip

    async def _segment_done(self, segment: Segment) -> None:
        assert self.recordings is not None
        await self._views.record(SEGMENT_ACTION, None, details=segment.details(self.recordings))
        self.counts.recorded_bytes += segment.size
        self.counts.segments_sealed += 1
        log.info("media: recorded %s (%d bytes, sha256 %s)", segment.path, segment.size, segment.sha256[:12])

    # Talkback ---------------------------------------------------------------------------------------

    async def talk(self, viewer: Viewer, unit_id: UnitId, offer_sdp: str) -> tuple[SessionId, str]:
        """Answer an operator's push-to-talk offer: their microphone goes to the unit, encoded as sent."""
        self._check_available()
        publisher = self.publisher(unit_id)
        if publisher is None:
            raise Conflict(f"unit {unit_id} is not streaming")
        if publisher.talk is None:
            raise Conflict(f"unit {unit_id} cannot play talkback: its offer's audio is not sendrecv")
        talker = publisher.talker
        if talker is not None and talker.closing is None:
            name = talker.viewer.username if talker.viewer else "someone"
            raise Conflict(f"{name} is talking to unit {unit_id}; one talker at a time")
        mime = self._plan(offer_sdp, lambda offer: {"audio": plan_talk(offer)})["audio"]
        session = TalkSession(SessionId(secrets.token_urlsafe(16)), self._new_pc(viewer), self._clock(), viewer=viewer,
                              publisher=publisher)  # fmt: skip
        pc = session.pc
        try:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
            transceiver.setCodecPreferences(_capabilities("audio", mime))
            passthrough.tap_receiver(transceiver.receiver, self._talk_sink(session))
            pc.on("track", lambda track: self._own(publisher, _consume(track), "talk-drain"))
            answer = await self._answer(pc, offer_sdp)
            session.started_ms = int(time.time() * 1000)
            await self._views.record("media.talk.start", viewer.user_id, details=self._talk_details(session))
        except BaseException:
            await self._discard(session)
            raise
        self._talkers[session.id] = session
        publisher.talker = session
        log.info("media: %s talking to unit %s (session %s)", viewer.username, unit_id, session.id)
        return session.id, answer

    async def end_talk(self, user_id: UserId, unit_id: UnitId, session_id: SessionId) -> None:
        session = self._talkers.get(session_id)
        if (
            session is None
            or session.viewer is None
            or session.viewer.user_id != user_id
            or session.publisher is None
            or session.publisher.unit is None
            or session.publisher.unit.id != unit_id
        ):
            raise NotFound(f"no talkback session {session_id} of yours to unit {unit_id}")
        await self._end(session, "ended by the operator")

    def _talk_sink(self, session: TalkSession) -> passthrough.FrameSink:
        def sink(mime: str, data: bytes, timestamp: int, clock_rate: int) -> None:
            publisher = session.publisher
            if publisher is None or publisher.talk is None or publisher.talker is not session:
                return
            session.frames += 1
            publisher.talk.feed.push(passthrough.make_packet(data, timestamp, clock_rate), keyframe=False)
            publisher.talk.wake()

        return sink

    def _talk_details(self, session: TalkSession) -> dict[str, Any]:
        unit = None if session.publisher is None else session.publisher.unit
        return {"unit_id": None if unit is None else unit.id, "court_id": None if unit is None else unit.court_id,
                "session_id": session.id, "username": None if session.viewer is None else session.viewer.username,
                "started_ms": session.started_ms}  # fmt: skip

    async def _close_talker(self, session: TalkSession, reason: str) -> None:
        self._talkers.pop(session.id, None)
        publisher = session.publisher
        if publisher is not None and publisher.talker is session:
            publisher.talker = None
        await session.pc.close()
        details = self._talk_details(session) | {"ended_ms": int(time.time() * 1000), "frames": session.frames,
                                                 "reason": reason}  # fmt: skip
        try:
            await self._views.record("media.talk.end", None if session.viewer is None else session.viewer.user_id,
                                     details=details)  # fmt: skip
        except Exception:
            log.exception("media: cannot record the end of talkback %s", session.id)
        log.info("media: talkback %s to unit %s closed: %s", session.id, details["unit_id"], reason)

    async def end_view(self, user_id: UserId, unit_id: UnitId, session_id: SessionId) -> None:
        session = self._viewers.get(session_id)
        if (
            session is None
            or session.viewer is None
            or session.viewer.user_id != user_id
            or session.publisher is None
            or session.publisher.unit is None
            or session.publisher.unit.id != unit_id
        ):
            raise NotFound(f"no WHEP session {session_id} of yours on unit {unit_id}")
        await self._end(session, "ended by the viewer")

    # Negotiation ------------------------------------------------------------------------------------

    def _check_available(self) -> None:
        if self._unavailable is not None:
            raise ServiceUnavailable(self._unavailable)

    def _plan(self, offer_sdp: str, plan: Callable[[Any], dict[str, str]]) -> dict[str, str]:
        self._check_available()
        try:
            offer = parse_offer(offer_sdp)
            check_transport(offer)
            return plan(offer)
        except OfferError as exc:
            raise (BadRequest if exc.malformed else ValidationFailed)(str(exc)) from None

    def _new_pc(self, owner: Viewer | None = None) -> RTCPeerConnection:
        """A peer connection counted against the caps: the process's, and for a user's view or talkback
        their own and their court's (counted from the moment it is asked for, so a burst cannot overshoot).

        Caps are per process, like the peer connections they protect: a user's views live on the processes
        holding the watched units, so across several processes a user holds at most the cap on each."""
        settings = self._settings
        retry = math.ceil(settings.ice_timeout_seconds)  # unconnected sessions holding a place are gone by then
        if len(self._pcs) >= settings.max_sessions:
            raise ServiceUnavailable(f"media sessions are full ({settings.max_sessions} on this server); "
                                     f"try again later", retry_after=retry)  # fmt: skip
        if owner is not None:
            mine = sum(1 for o in self._owners.values() if o.user_id == owner.user_id)
            if mine >= settings.max_sessions_per_user:
                raise TooManyRequests(f"{owner.username} has {mine} media sessions open on this server (limit "
                                      f"{settings.max_sessions_per_user} per user); end one first",
                                      retry_after=retry)  # fmt: skip
            court = sum(1 for o in self._owners.values() if o.court_id == owner.court_id)
            if owner.court_id is not None and court >= settings.max_sessions_per_court:
                raise TooManyRequests(f"court {owner.court_id} has {court} media sessions open on this server "
                                      f"(limit {settings.max_sessions_per_court} per court); try again later",
                                      retry_after=retry)  # fmt: skip
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pcs.add(pc)
        if owner is not None:
            self._owners[pc] = owner
        return pc

    def _forget(self, pc: RTCPeerConnection) -> None:
        self._pcs.discard(pc)
        self._owners.pop(pc, None)

    async def _answer(self, pc: RTCPeerConnection, offer_sdp: str) -> str:
        """Non-trickle answer (RFC 9725 §4.2): every local candidate is in it; the server is the DTLS server."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=prefer_dtls_server(offer_sdp), type="offer"))
        except AppError:
            raise
        except Exception as exc:
            raise ValidationFailed(f"the offer was refused: {exc}") from None
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def _discard(self, peer: _Peer) -> None:
        """Free a peer connection whose negotiation failed."""
        if isinstance(peer, Publisher):
            await _cancel(peer.tasks)
        try:
            await peer.pc.close()
        finally:
            self._forget(peer.pc)

    # Media ------------------------------------------------------------------------------------------

    def _frame_sink(self, publisher: Publisher, kind: str) -> passthrough.FrameSink:
        counts = self.counts

        def sink(mime: str, data: bytes, timestamp: int, clock_rate: int) -> None:
            publisher.last_media = self._clock()
            counts.frames_received += 1
            keyframe = kind == "video" and is_keyframe(mime, data)
            if publisher.recorder is not None:
                publisher.recorder.frame(kind, data, timestamp, clock_rate, keyframe)
            tracks = publisher.fanout.get(kind)
            if not tracks:
                return
            packet = passthrough.make_packet(data, timestamp, clock_rate)
            need_keyframe = False
            counts.frames_forwarded += len(tracks)
            for track in tracks:
                need_keyframe |= track.feed.push(packet, keyframe=keyframe)
                track.wake()
            if need_keyframe:
                publisher.want_keyframe()

        return sink

    async def _keyframe_requests(self, publisher: Publisher) -> None:
        assert publisher.keyframes is not None
        receiver = publisher.receivers.get("video")
        while True:
            delay = publisher.keyframes.due()
            if delay is None:
                publisher.keyframe_wanted.clear()
                await publisher.keyframe_wanted.wait()
            elif delay > 0:
                await asyncio.sleep(delay)
            else:
                sent = 0 if receiver is None else await passthrough.request_keyframe(receiver)
                publisher.keyframes.sent()
                if sent == 0 and receiver is not None:  # nothing heard yet: ask again later
                    publisher.keyframes.want()

    async def _drain(self, publisher: Publisher, track: MediaStreamTrack) -> None:
        """Consume a received track; passthrough means it only ever yields its end."""
        try:
            while True:
                await track.recv()
                publisher.decoded_frames += 1
                if publisher.decoded_frames == 1:
                    log.error("media: unit %s: aiortc decoded a frame; passthrough is bypassed", _unit_id(publisher))
        except MediaStreamError:
            pass

    # Telemetry --------------------------------------------------------------------------------------

    def _accept_channel(self, publisher: Publisher, channel: RTCDataChannel) -> None:
        reliable = channel.ordered and channel.maxRetransmits is None and channel.maxPacketLifeTime is None
        if channel.label != telemetry_channel.LABEL or not reliable:
            log.warning("media: unit %s: refused data channel %r (want a reliable ordered %r)",
                        _unit_id(publisher), channel.label, telemetry_channel.LABEL)  # fmt: skip
            channel.close()
            return

        def on_message(message: str | bytes) -> None:
            try:
                publisher.inbox.put_nowait((channel, message))
            except asyncio.QueueFull:
                _send(channel, telemetry_channel.error("too_many_requests", "wait for acks before sending more"))

        channel.on("message", on_message)

    async def _telemetry(self, publisher: Publisher) -> None:
        assert publisher.unit is not None
        while True:
            channel, message = await publisher.inbox.get()
            reply = await telemetry_channel.answer(self._ingest, publisher.unit, message)
            _send(channel, reply)

    # Supervision and closing ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            now = self._clock()
            peers: list[_Peer] = [*self._publishers.values(), *self._viewers.values(), *self._talkers.values()]
            for peer in peers:
                state = peer.pc.connectionState
                if peer.closing is not None:
                    continue
                if state in ("failed", "closed"):
                    self._close_later(peer, f"connection {state}")
                elif peer.connected_at is None:
                    if state == "connected":
                        peer.connected_at = now
                        if isinstance(peer, Publisher):
                            peer.last_media = now
                            self._promote(peer)
                    elif now - peer.created > settings.ice_timeout_seconds:
                        self._close_later(peer, f"not connected after {settings.ice_timeout_seconds:g} s")
                elif isinstance(peer, Publisher) and now - peer.last_media > settings.silence_timeout_seconds:
                    self._close_later(peer, f"no media for {settings.silence_timeout_seconds:g} s")

    def _close_later(self, peer: _Peer, reason: str) -> asyncio.Task[None]:
        if peer.closing is None:
            peer.closing = asyncio.create_task(self._close(peer, reason), name=f"media-close-{peer.id}")
            self._closing.add(peer.closing)
            peer.closing.add_done_callback(self._closing.discard)
        return peer.closing

    async def _end(self, peer: _Peer, reason: str) -> None:
        await asyncio.shield(self._close_later(peer, reason))

    async def _close(self, peer: _Peer, reason: str) -> None:
        try:
            if isinstance(peer, ViewerSession):
                await self._close_viewer(peer, reason)
            elif isinstance(peer, TalkSession):
                await self._close_talker(peer, reason)
            elif isinstance(peer, Publisher):
                await self._close_publisher(peer, reason)
        except Exception:
            log.exception("media: closing session %s failed", peer.id)
        finally:
            self._forget(peer.pc)

    async def _close_publisher(self, publisher: Publisher, reason: str) -> None:
        unit_id = _unit_id(publisher)
        self._publishers.pop(publisher.id, None)
        if self._pending.get(unit_id) is publisher:
            del self._pending[unit_id]
        if self._by_unit.get(unit_id) is publisher:
            del self._by_unit[unit_id]
            if unit_id in self._pending:  # the unit's newer session, still connecting, takes over at once
                self._promote(self._pending[unit_id])
            else:
                await self._announce(unit_id, here=False)
        for viewer in list(publisher.viewers.values()):
            self._close_later(viewer, "the unit stopped streaming")
        if publisher.talker is not None:
            self._close_later(publisher.talker, "the unit stopped streaming")
        if publisher.talk is not None:
            publisher.talk.stop()
        await asyncio.gather(*(v.closing for v in publisher.viewers.values() if v.closing is not None))
        await _cancel(publisher.tasks)
        await publisher.pc.close()
        if publisher.recorder is not None:
            recorder, publisher.recorder = publisher.recorder, None
            await recorder.close()
            self.counts.recorder_drops_ended += recorder.dropped
        log.info("media: unit %s session %s closed: %s", unit_id, publisher.id, reason)

    async def _close_viewer(self, session: ViewerSession, reason: str) -> None:
        self._viewers.pop(session.id, None)
        publisher = session.publisher
        if publisher is not None:
            publisher.viewers.pop(session.id, None)
            for kind, track in session.tracks.items():
                if track in publisher.fanout.get(kind, []):
                    publisher.fanout[kind].remove(track)
        for track in session.tracks.values():
            track.stop()
            self.counts.viewer_drops_ended += track.feed.dropped
        await session.pc.close()
        details = self._view_details(session) | {"ended_ms": int(time.time() * 1000), "reason": reason}
        viewer = session.viewer
        try:
            await self._views.record("media.view.end", None if viewer is None else viewer.user_id, details=details)
        except Exception:
            log.exception("media: cannot record the end of view %s", session.id)
        log.info("media: view %s of unit %s closed: %s", session.id, details["unit_id"], reason)

    def _view_details(self, session: ViewerSession) -> dict[str, Any]:
        publisher = session.publisher
        unit = None if publisher is None else publisher.unit
        return {
            "unit_id": None if unit is None else unit.id,
            "court_id": None if unit is None else unit.court_id,
            "session_id": session.id,
            "username": None if session.viewer is None else session.viewer.username,
            "media": sorted(session.tracks),
            "started_ms": session.started_ms,
        }

    def _own(self, publisher: Publisher, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(work, name=f"media-{what}-{publisher.id}")
        publisher.tasks.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(publisher.tasks.discard)


def _capabilities(kind: str, mime: str) -> list[RTCRtpCodecCapability]:
    """aiortc's codec capabilities of one mime type (every H.264 profile it has), with RTX for video."""
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    codecs = [] if capabilities is None else capabilities.codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime.lower()]
    return chosen + [c for c in codecs if c.mimeType.lower() == f"{kind}/rtx"]


async def _consume(track: MediaStreamTrack) -> None:
    """Read a received track to its end (tapped: nothing is decoded, it only ever yields its end)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


def _send(channel: RTCDataChannel, reply: bytes) -> None:
    if channel.readyState == "open":
        channel.send(reply.decode())


def _unit_id(publisher: Publisher) -> UnitId:
    return UnitId("?") if publisher.unit is None else publisher.unit.id


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("media: task %s failed", task.get_name(), exc_info=task.exception())
