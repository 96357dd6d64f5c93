"""Media sessions of one server process: units publishing over WHIP (RFC 9725), operators viewing over WHEP.

Three parts, as aiortc and websockets split theirs:

* ``media.table``: the session table, pure (caps, which of a unit's sessions is current, what to close when);
* ``media.peers``: the session objects, each owning its transport and tasks and an idempotent ``close()``;
* this module, the thin driver: negotiation with aiortc, one supervisor task feeding the table the time and
  each transport's state, and the two ports it reports to: the audit log (``AuditPort``: views and talkbacks
  are recorded when they start and end; a view that cannot be recorded is refused) and the cluster
  (``ClusterPort``: a unit's session here holds its media lease so viewers reaching another process are
  sent here).

A unit's encoded frames reach each viewer's bounded feed untouched (``media.passthrough``); its telemetry data
channel goes through the tracker like the WebSocket (``media.telemetry_channel``).

A unit's source need not be WebRTC. A receiver of another transport (GB/T 28181 MPEG-PS over RTP) builds a
``media.peers.PublisherLink`` (its state, how to ask the unit for a keyframe, how to close) and calls
``MediaHub.attach(unit, media, link)``: the returned ``Publisher`` is then the unit's session like a WHIP one
(viewers, recording, caps, supervision, leases), and the receiver hands each encoded frame to
``MediaHub.frame_sink(publisher, kind)`` (counted like a WHIP unit's). Talkback and the telemetry data
channel stay WebRTC's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from cluster.port import media_lease
from config.settings import MediaSettings
from core.errors import AppError, BadRequest, Conflict, NotStreaming, ServiceUnavailable, ValidationFailed
from core.ids import UnitId, UserId
from media import ice_control, passthrough, telemetry_channel
from media.evidence import SEGMENT_ACTION
from media.frames import Feed, KeyframeRequests
from media.ice import restrict_host_addresses
from media.offers import (
    OfferError,
    check_transport,
    parse_offer,
    plan_publish,
    plan_talk,
    plan_view,
    prefer_dtls_server,
    rtcp_mux_only,
    talks_back,
)
from media.peers import (
    AnySession,
    PeerSession,
    Publisher,
    PublisherLink,
    TalkSession,
    ViewerSession,
    WebRtcLink,
    talk_feed,
)
from media.recording import Segment, SessionRecorder, recover
from media.table import Close, Connected, Role, SessionId, SessionTable, Viewer
from media.trickle import check_if_match, new_etag, parse_fragment, restart_answer
from persistence.models import Unit

__all__ = [
    "Answered",
    "AuditPort",
    "ClusterPort",
    "MediaHub",
    "Publisher",
    "Role",
    "SessionId",
    "ViewRecorder",
    "Viewer",
]

log = logging.getLogger(__name__)

SUPERVISE_EVERY = 0.25  # seconds between checks of connection state, ICE deadline and silence
KEYFRAME_INTERVAL = 1.0  # at most one PLI a second to a unit (the first one at once)
# Retry-After (seconds) on 409 and 503 (RFC 9725 §4.2 lets a client retry; these say when it is worth it).
NOT_STREAMING_RETRY = 5  # a unit that is not streaming may be reconnecting (silence or 4G handover)
TALKER_BUSY_RETRY = 3  # push-to-talk is held for seconds at a time
AUDIT_RETRY = 2  # the audit log's database was away for a moment
UNAVAILABLE_RETRY = 300  # this process's aiortc cannot forward media: an operator has to act


class Answered(NamedTuple):
    """A new session's id, the SDP answer and the session's entity-tag (RFC 9725 §4.3.1)."""

    id: SessionId
    sdp: str
    etag: str


class Patched(NamedTuple):
    """A PATCH's outcome: the session's entity-tag after it, and the server's fragment if ICE restarted."""

    etag: str
    fragment: str | None


class AuditPort(Protocol):
    """Where views, talkbacks and recorded segments are recorded (the audit log's ``record``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, details: dict[str, Any] | None = None
    ) -> object: ...


ViewRecorder = AuditPort  # the name this port had before the split


class ClusterPort(Protocol):
    """The part of ``cluster.port.Coordinator`` media needs: who holds a unit's media lease."""

    node_id: str
    shared: bool

    async def holder(self, name: str) -> str | None: ...

    async def take(self, name: str) -> None: ...

    async def release(self, name: str) -> None: ...


@dataclass(slots=True)
class MediaCounts:
    """Totals since this process started, for the metrics: plain integers bumped where frames pass, and the
    drop counts of sessions that ended (those of live ones are summed when scraped)."""

    frames_received: int = 0  # encoded frames from units
    frames_forwarded: int = 0  # encoded frames handed to viewers (one per viewer)
    viewer_drops_ended: int = 0  # frames viewers skipped (behind, waiting for a keyframe), of ended views
    recorder_drops_ended: int = 0  # frames recorders could not keep up with, of ended sessions
    recorded_bytes: int = 0  # evidence written, in finished segments
    segments_sealed: int = 0  # finished segments whose SHA-256 went into the audit chain


class MediaHub:
    """Every media session of this process: negotiates, supervises, closes; the table decides."""

    def __init__(
        self,
        settings: MediaSettings,
        ingest: telemetry_channel.Ingest,
        views: AuditPort,
        *,
        recordings: Path | None = None,
        cluster: ClusterPort | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._cluster = cluster
        self.recordings = recordings  # where recordings go (None: nothing is recorded)
        self._ingest = ingest
        self._audit = views
        self._clock = clock
        self.counts = MediaCounts()
        self._table: SessionTable[Publisher, ViewerSession | TalkSession] = SessionTable(settings)
        self._ending: dict[SessionId, asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._unavailable: str | None = None

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
        for session in sorted(self._table, key=lambda s: s.role is Role.PUBLISHER):  # viewers first
            self._close_later(session, "server shutting down")
        while self._ending:
            await asyncio.gather(*self._ending.values(), return_exceptions=True)

    @property
    def peer_connections(self) -> int:
        """Sessions holding a place (negotiating, live or being closed)."""
        return self._table.places

    def session_counts(self) -> dict[str, int]:
        """Sessions by role: units publishing (WHIP or GB/T 28181), viewers (WHEP and views in rooms), operators
        talking back, and people publishing in consultation rooms (a source with an owner)."""
        counts = {"unit": 0, "viewer": 0, "talkback": 0, "participant": 0}
        names = {Role.PUBLISHER: "unit", Role.VIEWER: "viewer", Role.TALKER: "talkback"}
        for session in self._table:
            participant = session.role is Role.PUBLISHER and session.owner is not None
            counts["participant" if participant else names[session.role]] += 1
        return counts

    def frames_dropped(self) -> dict[str, int]:
        """Frames dropped since start, by where: skipped by viewers that fell behind, or by recorders."""
        totals = {"viewer": self.counts.viewer_drops_ended, "recorder": self.counts.recorder_drops_ended}
        for session in self._table:
            dropped = session.dropped()
            if dropped is not None:
                totals[dropped[0]] += dropped[1]
        return totals

    def streaming_units(self) -> set[UnitId]:
        return self._table.streaming_units()

    def publisher(self, unit_id: UnitId) -> Publisher | None:
        return self._table.current(unit_id)

    def find(self, session_id: SessionId) -> AnySession | None:
        """A live session by id alone (a room's session URL names no unit; the caller checks the owner)."""
        return self._table.get(session_id)

    def viewers_of(self, unit_id: UnitId) -> list[ViewerSession]:
        publisher = self.publisher(unit_id)
        return [] if publisher is None else list(publisher.viewers.values())

    # WHIP -------------------------------------------------------------------------------------------

    async def publish(
        self, unit: Unit, offer_sdp: str, *, owner: Viewer | None = None, participant: bool = False
    ) -> Answered:
        """Answer a unit's WHIP offer; a unit that publishes again replaces its previous session.

        ``participant``: the source is a person in a consultation room (``media.rooms``), keyed as a
        unit and owned by ``owner`` (caps count it, revocation ends it): no telemetry channel, no talkback,
        recorded only when its room is."""
        plan = self._plan(offer_sdp, lambda offer: plan_publish(offer))
        talkback = not participant and talks_back(parse_offer(offer_sdp))
        session_id = self._hold(owner)
        link = WebRtcLink(self._new_pc())
        publisher = Publisher(id=session_id, role=Role.PUBLISHER, unit_id=unit.id, created=self._clock(),
                              unit=unit, link=link, media=plan, owner=owner, auto_record=not participant,
                              keyframes=KeyframeRequests(KEYFRAME_INTERVAL, self._clock))  # fmt: skip
        pc = link.pc
        try:
            for kind, mime in plan.items():
                if kind == "audio" and talkback:  # the unit plays what the centre says on the same section
                    publisher.talk = talk_feed(self._settings.viewer_queue_frames)
                    transceiver = pc.addTransceiver(publisher.talk, direction="sendrecv")
                else:
                    transceiver = pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(_capabilities(kind, mime))
                passthrough.tap_receiver(transceiver.receiver, self.frame_sink(publisher, kind))
                link.receivers[kind] = transceiver.receiver
                publisher.fanout[kind] = []
            pc.on("track", lambda track: publisher.own(_drain(publisher, track), "drain"))
            if participant:
                pc.on("datachannel", lambda channel: channel.close())
            else:
                pc.on("datachannel", lambda channel: _accept_channel(publisher, channel))
            answer = await self._answer(pc, offer_sdp)
        except BaseException:
            await self._discard(publisher)
            raise
        if not participant:
            publisher.own(self._telemetry(publisher), "telemetry")
        pc.on("connectionstatechange", lambda: self._connected(publisher) if link.state == "connected" else None)
        await self._register(publisher, f"offered {plan}")
        return Answered(publisher.id, answer, publisher.etag)

    async def attach(self, unit: Unit, media: dict[str, str], link: PublisherLink) -> Publisher:
        """Make a non-WebRTC source the unit's session (module docstring): 503 when the process is full."""
        publisher = Publisher(id=self._hold(), role=Role.PUBLISHER, unit_id=unit.id, created=self._clock(),
                              unit=unit, link=link, media=dict(media),
                              keyframes=KeyframeRequests(KEYFRAME_INTERVAL, self._clock))  # fmt: skip
        publisher.fanout = {kind: [] for kind in media}
        await self._register(publisher, f"attached {media}")
        return publisher

    async def _register(self, publisher: Publisher, what: str) -> None:
        """A negotiated source joins the table: at once the unit's session, or waiting until connected."""
        publisher.own(publisher.keyframe_requests(), "keyframes")
        unit_id = publisher.unit_id
        elsewhere = self._table.current(unit_id) is None and await self._streams_elsewhere(unit_id)
        decision = self._table.publish(publisher, streams_elsewhere=elsewhere)
        if not decision.now:
            # The unit streams now (here or on another process): the new session takes over only once
            # connected (_connected); until then the old one keeps streaming, recording and serving its
            # viewers, and stays if this one fails.
            log.info("media: unit %s %s as session %s; it takes over once connected", unit_id, what, publisher.id)
            if decision.replaced is not None:
                await self._end(decision.replaced, "replaced by a newer offer of the unit")
            return
        if self._settings.record_sessions and publisher.auto_record:
            self._start_recorder(publisher)
        log.info("media: unit %s publishing (session %s, %s)", unit_id, publisher.id, what)
        await self._announce(unit_id, here=True)
        if decision.replaced is not None:
            await self._end(decision.replaced, "replaced by a new session of the unit")

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

    def _connected(self, publisher: Publisher) -> None:
        """A unit's waiting session connected: it becomes the unit's session, carrying on the recording, and
        the old one is closed with its viewers (they watch again, on the new one)."""
        if publisher.id in self._ending:
            return
        promoted, previous = self._table.promote(publisher)
        if promoted:
            self._took_over(publisher, previous)

    def _took_over(self, publisher: Publisher, previous: Publisher | None) -> None:
        if (self._settings.record_sessions and publisher.auto_record) or (
            previous is not None and previous.recorder is not None
        ):
            self._start_recorder(publisher)
        log.info("media: unit %s session %s connected and takes over", publisher.unit_id, publisher.id)
        publisher.own(self._announce(publisher.unit_id, here=True), "announce")
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
        waiting = self._table.waiting(unit_id)  # not promoted when the working one ends
        if waiting is not None:
            await self._end(waiting, reason)
        publisher = self.publisher(unit_id)
        if publisher is None:
            return waiting is not None
        await self._end(publisher, reason)
        return True

    def viewers(self) -> list[Viewer]:
        """Who is viewing, talking or publishing in a room now (on this process)."""
        return [s.owner for s in self._table if s.owner is not None]

    async def end_views(self, match: Callable[[Viewer], bool], reason: str) -> int:
        """End every WHEP view and talkback whose viewer matches, e.g. a logged-out or revoked session's, and
        every room participant's source they own."""
        return await self.end_where(lambda s: s.owner is not None and match(s.owner), reason)

    async def end_where(self, match: Callable[[AnySession], bool], reason: str) -> int:
        """End every session that matches (e.g. one person's sessions in a consultation room)."""
        sessions = [s for s in self._table if match(s)]
        await asyncio.gather(*(self._end(session, reason) for session in sessions))
        return len(sessions)

    async def end_publish(self, unit_id: UnitId, session_id: SessionId) -> None:
        await self._end(self._table.publisher_of(session_id, unit_id), "ended by the unit")

    # WHEP -------------------------------------------------------------------------------------------

    async def view(self, viewer: Viewer, unit_id: UnitId, offer_sdp: str) -> Answered:
        """Answer a viewer's WHEP offer with the unit's live media, forwarded as the unit encoded it."""
        self._check_available()
        publisher = self.publisher(unit_id)
        if publisher is None:
            raise NotStreaming(f"unit {unit_id} is not streaming", retry_after=NOT_STREAMING_RETRY)
        plan = self._plan(offer_sdp, lambda offer: plan_view(offer, publisher.media))
        session = ViewerSession(id=self._hold(viewer), role=Role.VIEWER, unit_id=unit_id, created=self._clock(),
                                owner=viewer, pc=self._new_pc(), publisher=publisher)  # fmt: skip
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
            if self.publisher(unit_id) is not publisher:
                raise Conflict(f"unit {unit_id} stopped streaming", retry_after=NOT_STREAMING_RETRY)
            session.started_ms = int(time.time() * 1000)
            try:
                await self._audit.record("media.view.start", viewer.user_id, details=session.details())
            except Exception as exc:
                log.exception("media: cannot record the start of a view of %s", unit_id)
                raise ServiceUnavailable(
                    "the view cannot be recorded in the audit log; try again", retry_after=2
                ) from exc
        except BaseException:
            await self._discard(session)
            raise
        self._table.add(session)
        publisher.watch(session)
        log.info("media: %s viewing unit %s (session %s)", viewer.username, unit_id, session.id)
        return Answered(session.id, answer, session.etag)

    async def end_view(self, user_id: UserId, unit_id: UnitId, session_id: SessionId) -> None:
        await self._end(self._table.owned(Role.VIEWER, session_id, user_id, unit_id), "ended by the viewer")

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
        return await publisher.stop_recorder()

    def recording(self, unit_id: UnitId) -> bool:
        publisher = self.publisher(unit_id)
        return publisher is not None and publisher.recorder is not None

    def _start_recorder(self, publisher: Publisher) -> None:
        if self.recordings is None:
            return
        publisher.recorder = SessionRecorder(
            self.recordings, publisher.unit.id, publisher.id, publisher.media,
            segment_seconds=self._settings.segment_seconds, on_segment=self._segment_done,
            want_keyframe=publisher.want_keyframe,
        )  # fmt: skip

    async def _segment_done(self, segment: Segment) -> None:
        assert self.recordings is not None
        await self._audit.record(SEGMENT_ACTION, None, details=segment.details(self.recordings))
        self.counts.recorded_bytes += segment.size
        self.counts.segments_sealed += 1
        log.info("media: recorded %s (%d bytes, sha256 %s)", segment.path, segment.size, segment.sha256[:12])

    # Talkback ---------------------------------------------------------------------------------------

    async def talk(self, viewer: Viewer, unit_id: UnitId, offer_sdp: str) -> Answered:
        """Answer an operator's push-to-talk offer: their microphone goes to the unit, encoded as sent."""
        self._check_available()
        publisher = self.publisher(unit_id)
        if publisher is None:
            raise NotStreaming(f"unit {unit_id} is not streaming", retry_after=NOT_STREAMING_RETRY)
        if publisher.talk is None:
            raise Conflict(f"unit {unit_id} cannot play talkback: its offer's audio is not sendrecv")
        talker = publisher.talker
        if talker is not None and talker.id not in self._ending:
            name = talker.owner.username if talker.owner else "someone"
            raise Conflict(f"{name} is talking to unit {unit_id}; one talker at a time", retry_after=TALKER_BUSY_RETRY)
        mime = self._plan(offer_sdp, lambda offer: {"audio": plan_talk(offer)})["audio"]
        session = TalkSession(id=self._hold(viewer), role=Role.TALKER, unit_id=unit_id, created=self._clock(),
                              owner=viewer, pc=self._new_pc(), publisher=publisher)  # fmt: skip
        pc = session.pc
        try:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
            transceiver.setCodecPreferences(_capabilities("audio", mime))
            passthrough.tap_receiver(transceiver.receiver, lambda _mime, data, ts, rate: session.frame(data, ts, rate))
            pc.on("track", lambda track: publisher.own(_consume(track), "talk-drain"))
            answer = await self._answer(pc, offer_sdp)
            session.started_ms = int(time.time() * 1000)
            await self._audit.record("media.talk.start", viewer.user_id, details=session.details())
        except BaseException:
            await self._discard(session)
            raise
        self._table.add(session)
        publisher.talker = session
        log.info("media: %s talking to unit %s (session %s)", viewer.username, unit_id, session.id)
        return Answered(session.id, answer, session.etag)

    async def end_talk(self, user_id: UserId, unit_id: UnitId, session_id: SessionId) -> None:
        await self._end(self._table.owned(Role.TALKER, session_id, user_id, unit_id), "ended by the operator")

    # Trickle ICE and ICE restart (RFC 9725 §4.3) ---------------------------------------------------

    def session(self, role: Role, unit_id: UnitId, session_id: SessionId, user_id: UserId | None) -> PeerSession:
        """A live session by its URL: a unit's own WHIP session, or the caller's own view or talkback (404)."""
        if role is Role.PUBLISHER:
            return self._table.publisher_of(session_id, unit_id)
        assert user_id is not None
        return self._table.owned(role, session_id, user_id, unit_id)

    async def patch(self, session: PeerSession, if_match: str | None, body: bytes) -> Patched:
        """Trickled candidates (nothing to answer) or an ICE restart (the server's new fragment, a new ETag):
        the session, its recording and its viewers carry on either way (``media.ice_control``)."""
        check_if_match(if_match, session.etag)
        fragment = parse_fragment(body)
        pc = session.peer_connection
        if pc is None:
            raise Conflict("this session has no WebRTC transport to patch")
        if fragment.ufrag is not None and fragment.pwd is not None and fragment.restarts(ice_control.remote_ufrag(pc)):
            local = await ice_control.restart(pc, fragment.ufrag, fragment.pwd, fragment.candidates, fragment.end)
            session.etag = new_etag()
            log.info("media: %s session %s of unit %s: ICE restarted", session.role, session.id, session.unit_id)
            return Patched(
                session.etag, restart_answer(local.kind, local.mid, local.ufrag, local.pwd, local.candidates)
            )
        await ice_control.add_candidates(pc, fragment.candidates, fragment.end)
        return Patched(session.etag, None)

    # Negotiation ------------------------------------------------------------------------------------

    def _check_available(self) -> None:
        if self._unavailable is not None:
            raise ServiceUnavailable(self._unavailable, retry_after=UNAVAILABLE_RETRY)

    def _plan(self, offer_sdp: str, plan: Callable[[Any], dict[str, str]]) -> dict[str, str]:
        self._check_available()
        try:
            offer = parse_offer(offer_sdp)
            check_transport(offer)
            return plan(offer)
        except OfferError as exc:
            raise (BadRequest if exc.malformed else ValidationFailed)(str(exc)) from None

    def _hold(self, owner: Viewer | None = None) -> SessionId:
        """A new session's id, its place held against the caps from now (a burst cannot overshoot)."""
        session_id = SessionId(secrets.token_urlsafe(16))
        self._table.hold(session_id, owner)
        return session_id

    @staticmethod
    def _new_pc() -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def _answer(self, pc: RTCPeerConnection, offer_sdp: str) -> str:
        """The answer carries every local candidate (the server has them at once; clients may still trickle theirs,
        RFC 9725 §4.3); the server is the DTLS server; bundled sections say ``rtcp-mux-only``."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=prefer_dtls_server(offer_sdp), type="offer"))
        except AppError:
            raise
        except Exception as exc:
            raise ValidationFailed(f"the offer was refused: {exc}") from None
        await pc.setLocalDescription(await pc.createAnswer())
        return rtcp_mux_only(str(pc.localDescription.sdp))

    async def _discard(self, session: PeerSession) -> None:
        """Free a session whose negotiation failed (it never joined the table; nothing to audit)."""
        try:
            await session.close()
        finally:
            self._table.release(session.id)

    # Media ------------------------------------------------------------------------------------------

    def frame_sink(self, publisher: Publisher, kind: str) -> passthrough.FrameSink:
        """Where the unit's encoded frames of ``kind`` go (its viewers and its recorder), counted: a WHIP
        receiver's tap, or an attached source's receiver (GB/T 28181)."""
        counts = self.counts

        def sink(mime: str, data: bytes, timestamp: int, clock_rate: int) -> None:
            counts.frames_received += 1
            counts.frames_forwarded += len(publisher.fanout.get(kind) or ())
            publisher.frame(kind, mime, data, timestamp, clock_rate, self._clock())

        return sink

    # Telemetry --------------------------------------------------------------------------------------

    async def _telemetry(self, publisher: Publisher) -> None:
        while True:
            channel, message = await publisher.inbox.get()
            reply = await telemetry_channel.answer(self._ingest, publisher.unit, message)
            _send(channel, reply)

    # Supervision and closing ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            for action in self._table.supervise(self._clock(), lambda session: session.state):
                if isinstance(action, Close):
                    session = self._table.get(action.session.id)
                    if session is not None:
                        self._close_later(session, action.reason)
                elif isinstance(action, Connected) and action.session.role is Role.PUBLISHER:
                    waiting = self._table.waiting(action.session.unit_id)
                    if waiting is action.session:
                        self._connected(waiting)

    def _close_later(self, session: AnySession, reason: str) -> asyncio.Task[None]:
        """Close a session (once): out of the table now, then freed, audited and its place released."""
        task = self._ending.get(session.id)
        if task is None:
            removal = self._table.remove(session)
            if removal.promoted is not None:  # the unit's newer session, still connecting, takes over at once
                self._took_over(removal.promoted, None)
            task = asyncio.create_task(self._close(session, reason, removal.release), name=f"media-close-{session.id}")
            self._ending[session.id] = task
            task.add_done_callback(lambda _: self._ending.pop(session.id, None))
        return task

    async def _end(self, session: AnySession, reason: str) -> None:
        await asyncio.shield(self._close_later(session, reason))

    async def _close(self, session: AnySession, reason: str, release: UnitId | None) -> None:
        try:
            if release is not None:
                await self._announce(release, here=False)
            dependents = [self._close_later(d, "the unit stopped streaming") for d in session.dependents()]
            await asyncio.gather(*dependents, return_exceptions=True)
            await session.close()
            dropped = session.dropped()
            if dropped is not None:
                where, count = dropped
                if where == "viewer":
                    self.counts.viewer_drops_ended += count
                else:
                    self.counts.recorder_drops_ended += count
            entry = session.end_entry(reason, int(time.time() * 1000))
            if entry is not None:
                action, details = entry
                try:
                    await self._audit.record(action, None if session.owner is None else session.owner.user_id,
                                             details=details)  # fmt: skip
                except Exception:
                    log.exception("media: cannot record the end of session %s", session.id)
            log.info("media: %s session %s of unit %s closed: %s", session.role, session.id, session.unit_id, reason)
        except Exception:
            log.exception("media: closing session %s failed", session.id)
        finally:
            self._table.release(session.id)


def _accept_channel(publisher: Publisher, channel: RTCDataChannel) -> None:
    """Take the unit's reliable ordered ``telemetry`` channel; refuse any other."""
    reliable = channel.ordered and channel.maxRetransmits is None and channel.maxPacketLifeTime is None
    if channel.label != telemetry_channel.LABEL or not reliable:
        log.warning("media: unit %s: refused data channel %r (want a reliable ordered %r)",
                    publisher.unit_id, channel.label, telemetry_channel.LABEL)  # fmt: skip
        channel.close()
        return

    def on_message(message: str | bytes) -> None:
        try:
            publisher.inbox.put_nowait((channel, message))
        except asyncio.QueueFull:
            _send(channel, telemetry_channel.error("too_many_requests", "wait for acks before sending more"))

    channel.on("message", on_message)


async def _drain(publisher: Publisher, track: MediaStreamTrack) -> None:
    """Consume a received track; passthrough means it only ever yields its end."""
    try:
        while True:
            await track.recv()
            publisher.decoded_frames += 1
            if publisher.decoded_frames == 1:
                log.error("media: unit %s: aiortc decoded a frame; passthrough is bypassed", publisher.unit_id)
    except MediaStreamError:
        pass


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
