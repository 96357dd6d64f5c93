"""A GB/T 28181 unit's live video: INVITE on demand, MPEG-PS over RTP in, encoded frames to the media hub.

Opening a GB unit's video (a WHEP view, or an SOS) calls ``LiveStreams.ensure``: an RTP port is taken from
``gb28181.rtp_port_range``, the device is INVITEd to send there with a fresh SSRC (``y=``), and once its
first keyframe arrives the unit becomes a publisher of the hub (``MediaHub.attach``), so viewers
and the recorder get its frames exactly like a WHIP unit's: no decoding, no transcoding.

RTP comes over UDP, or over TCP when the device's RTP transport (its own, stored with it, else the setting
``gb28181.rtp_transport``) is ``tcp-passive`` (the device connects to our port and frames each packet with its
length, RFC 4571). Only RTP from the device's addresses (where it
registered from, and its answer's ``c=``) with the invited SSRC is taken; anything else is dropped without
an answer and counted. A broken PS stream is survived by the demuxer and logged with the device id. The
call ends (BYE) when the hub has no viewer and no recording of the unit for ``media_linger_seconds``, when
the hub ends the session (silence, revocation, shutdown), or when the device hangs up.

Codecs: H.264 of any profile is forwarded as sent, under the baseline profile-level-id the viewer negotiated
(aiortc's decoder and Chromium's play main profile that way: both tested). H.265 cannot reach a browser over
WebRTC without transcoding: a view is refused with a message saying so, while the stream is recorded as
evidence when it is held (an SOS, an operator's recording).

Audio: the codec the PSM names (or, without a PSM, the audio heard before the first keyframe) becomes the
session's audio track. G.711 (PCMA/PCMU) is forwarded to viewers as sent, cut into 20 ms frames
(``gb28181.media.audio``), and recorded; AAC is recorded only (WebRTC has no AAC: the viewer is told, see
``media.offers.not_forwarded``). Audio of a stream type not taken (G.722.1, G.729…) is dropped by the demuxer,
counted and logged with the device id; audio whose bytes lie about their codec likewise. Video goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.settings import Gb28181Settings
from core.errors import Conflict, ServiceUnavailable
from core.ids import UnitId
from gb28181.enrol import rtp_transport
from gb28181.media.audio import AudioError, audio_frames
from gb28181.media.broadcast import PCMA, Talkback
from gb28181.media.ps import PTS_WRAP, EsFrame
from gb28181.media.rtp import PsOverRtp, RtpError, parse_rtp
from gb28181.media.sdp import SdpError, invite_offer, live_ssrc, parse_answer
from gb28181.service import DeviceUnavailable, Dialog, GbService
from gb28181.transport import widen_receive_buffer
from media.frames import is_keyframe
from media.peers import PublisherLink
from persistence.models import Unit
from persistence.port import Store

log = logging.getLogger(__name__)

SUPERVISE_EVERY = 0.5
CLOCK_RATE = 90_000  # PS timestamps (PTS) are 90 kHz
#: A stream's RTP socket's kernel receive buffer: the default (208 KiB of kernel accounting, about 85 packets)
#: holds a quarter second of a 4 Mbit/s 1080p body camera, and a longer stall of the event loop lost packets, so
#: whole pictures until the next keyframe. 1 MiB (doubled by Linux for its bookkeeping) holds a few seconds.
RTP_RECEIVE_BUFFER = 1024 * 1024
CAMERA_TYPES = ("131", "132")  # GB/T 28181 id digits 11–13: camera, network camera
H264 = "video/H264"

#: (mime type, encoded frame, timestamp from the first frame, clock rate), as ``media.passthrough``'s sinks take
FrameSink = Callable[[str, bytes, int, int], None]


class Hub(Protocol):
    """What live GB video needs of the media hub (``media.sessions.MediaHub``)."""

    def publisher(self, unit_id: UnitId) -> Any: ...

    def viewers_of(self, unit_id: UnitId) -> list[Any]: ...

    def recording(self, unit_id: UnitId) -> bool: ...

    async def attach(
        self, unit: Unit, media: dict[str, str], link: PublisherLink, *, talk_mime: str | None = None
    ) -> Any: ...

    def frame_sink(self, publisher: Any, kind: str) -> FrameSink: ...

    async def end_unit(self, unit_id: UnitId, reason: str) -> bool: ...


@dataclass(eq=False)
class LiveStream:
    """One device's live video call: its RTP socket, demuxer, dialog and hub publisher."""

    unit: Unit
    device_id: str
    channel_id: str
    port: int
    ssrc: int
    hosts: set[str]
    ssrcs: set[int]
    tcp: bool = False  # RTP over TCP, the device connecting (tcp-passive), else UDP
    receiver: PsOverRtp = field(default_factory=PsOverRtp)
    socket: asyncio.DatagramTransport | None = None
    listener: asyncio.Server | None = None  # RTP over TCP (rtp_transport tcp-passive): where the device connects
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    talkback: asyncio.Task[None] | None = None  # the operator's PCMA to the device (gb28181.media.broadcast)
    dialog: Dialog | None = None
    publisher: Any = None
    mime: str = ""  # the video codec, from the PSM: video/H264 or video/H265
    sink: FrameSink | None = None
    first_keyframe: asyncio.Future[EsFrame] | None = None
    first_pts: int | None = None
    audio_mime: str = ""  # the audio track's codec once attached: audio/PCMA, audio/PCMU or audio/AAC
    audio_sink: FrameSink | None = None
    audio_heard: str = ""  # the codec of audio that came before the first keyframe (a PS without a PSM)
    audio_frames: int = 0  # audio frames handed to the hub (G.711 in 20 ms pieces, AAC frame by frame)
    audio_errors: int = 0  # audio PES whose bytes are not what their codec says: dropped
    unknown_logged: set[tuple[int, int]] = field(default_factory=set)  # (stream id, type) already logged
    idle_since: float | None = None
    ended: bool = False  # hung up (BYE sent, socket closed)
    held: bool = False  # kept while the unit is recorded (an SOS, an operator's recording), not only while watched
    foreign_packets: int = 0  # from an address or SSRC that was not invited: dropped
    bad_packets: int = 0  # not RTP
    frames: int = 0
    audio_frames_dropped: int = 0
    errors_logged: int = 0

    def datagram(self, data: bytes, address: tuple[str, int]) -> None:
        if address[0] not in self.hosts:
            self._foreign(address, "address")
            return
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            self.bad_packets += 1
            if self.bad_packets % 100 == 1:
                log.warning("gb28181: device %s (unit %s): %d packets that are not RTP, e.g. %s", self.device_id,
                            self.unit.id, self.bad_packets, exc)  # fmt: skip
            return
        if packet.ssrc not in self.ssrcs:
            self._foreign(address, f"SSRC {packet.ssrc}")
            return
        demuxer = self.receiver.demuxer
        errors = demuxer.errors
        for frame in self.receiver.packet(packet):
            self._frame(frame)
        if demuxer.errors != errors and self.errors_logged < 20:
            self.errors_logged += 1
            log.warning("gb28181: device %s (unit %s): broken PS (%s); %d errors, %d bytes skipped so far",
                        self.device_id, self.unit.id, demuxer.last_error, demuxer.errors, demuxer.skipped)  # fmt: skip
        if demuxer.unknown and not self.unknown_logged.issuperset(demuxer.unknown.items()):
            for stream_id, stream_type in demuxer.unknown.items():
                if (stream_id, stream_type) not in self.unknown_logged and len(self.unknown_logged) < 20:
                    self.unknown_logged.add((stream_id, stream_type))
                    log.warning("gb28181: device %s (unit %s): PS stream 0x%02X has stream type 0x%02X, which is "
                                "not taken here: its packets are dropped (%d so far), the others go on",
                                self.device_id, self.unit.id, stream_id, stream_type, demuxer.unhandled)  # fmt: skip

    def _foreign(self, address: tuple[str, int], what: str) -> None:
        self.foreign_packets += 1
        if self.foreign_packets % 1000 == 1:
            log.warning("gb28181: RTP port %d of device %s (unit %s): dropped %d packets not invited (%s from %s:%s)",
                        self.port, self.device_id, self.unit.id, self.foreign_packets, what, *address)  # fmt: skip

    def _frame(self, frame: EsFrame) -> None:
        if not frame.mime.startswith("video/"):
            self._audio(frame)
            return
        if self.sink is None:
            waiting = self.first_keyframe
            if waiting is not None and not waiting.done() and is_keyframe(frame.mime, frame.data):
                waiting.set_result(frame)
            return
        self.deliver(frame)

    def _audio(self, frame: EsFrame) -> None:
        """An audio frame to the hub, on the video's clock (both PTS of one PS); dropped before the first
        picture, when it is not the attached codec, or when its bytes lie (counted and logged)."""
        if self.audio_sink is None or self.first_pts is None or frame.mime != self.audio_mime:
            if self.sink is None and not self.audio_heard:
                self.audio_heard = frame.mime
            self.audio_frames_dropped += 1
            return
        offset = (frame.pts - self.first_pts) % PTS_WRAP
        if offset >= PTS_WRAP // 2:  # just before the first picture
            self.audio_frames_dropped += 1
            return
        try:
            pieces = audio_frames(frame.mime, frame.data, offset)
        except AudioError as exc:
            self.audio_errors += 1
            if self.audio_errors % 100 == 1:
                log.warning("gb28181: device %s (unit %s): broken %s audio (%s); %d such frames dropped",
                            self.device_id, self.unit.id, frame.mime, exc, self.audio_errors)  # fmt: skip
            return
        for data, timestamp in pieces:
            self.audio_frames += 1
            self.audio_sink(frame.mime, data, timestamp % PTS_WRAP, CLOCK_RATE)

    def audio_codec(self) -> str:
        """The audio to attach with the first picture: the PSM's, else what was heard; "" for none."""
        named = [mime for mime in self.receiver.demuxer.stream_types.values() if mime.startswith("audio/")]
        return named[0] if named else self.audio_heard

    def deliver(self, frame: EsFrame) -> None:
        assert self.sink is not None
        if self.first_pts is None:
            self.first_pts = frame.pts
        self.frames += 1
        self.sink(frame.mime, frame.data, (frame.pts - self.first_pts) % PTS_WRAP, CLOCK_RATE)


class _RtpSocket(asyncio.DatagramProtocol):
    def __init__(self, stream: LiveStream) -> None:
        self._stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._stream.datagram(data, addr)
        except Exception:  # a bug on one packet must not end the stream's socket
            log.exception("gb28181: device %s: an RTP packet broke its handler", self._stream.device_id)


class RtpOverTcp:
    """RTP over TCP for one stream (RFC 4571: each packet after its 16-bit length), from the device's addresses
    only; a connection from elsewhere is closed at once and counted like uninvited UDP."""

    def __init__(self, stream: LiveStream) -> None:
        self._stream = stream

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = self._stream
        task = asyncio.current_task()
        address: tuple[str, int] = writer.get_extra_info("peername")[:2]
        if address[0] not in stream.hosts or task is None:
            stream.foreign_packets += 1
            writer.close()
            return
        stream.connections.add(task)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                stream.datagram(await reader.readexactly(length), address)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("gb28181: device %s (unit %s) closed its RTP connection", stream.device_id, stream.unit.id)
        except Exception:
            log.exception("gb28181: device %s: an RTP packet broke its handler", stream.device_id)
        finally:
            stream.connections.discard(task)
            writer.close()


class LiveStreams:
    """Every GB unit's live video call on this process."""

    def __init__(
        self,
        settings: Gb28181Settings,
        service: GbService,
        hub: Hub,
        store: Store,
        *,
        host: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._service = service
        self._hub = hub
        self._store = store
        self._host = host  # where RTP sockets are bound
        self._clock = clock
        first, last = (int(p) for p in settings.rtp_port_range.split("-"))
        self._ports = range(first, last + 1)
        self._next_port = 0
        self._sequence = secrets.randbelow(10_000)
        self._streams: dict[UnitId, LiveStream] = {}
        self._opening: dict[UnitId, asyncio.Task[LiveStream]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="gb28181-live-supervisor")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._tasks) + list(self._opening.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._opening.values(), return_exceptions=True)
        for stream in list(self._streams.values()):
            self._hang_up(stream, "server shutting down")

    def stream(self, unit_id: UnitId) -> LiveStream | None:
        return self._streams.get(unit_id)

    def watchable(self) -> set[UnitId]:
        """GB units whose video can be opened here now (registered), streaming or not."""
        return self._service.registered_units()

    def is_device(self, unit_id: UnitId) -> bool:
        return self._service.registration(unit_id) is not None

    async def ensure(self, unit: Unit, *, hold: bool = False) -> None:
        """Have the unit's live video on the hub, INVITEing its device if needed. Nothing happens for a unit
        that is not a GB device registered here (the hub then answers that it is not streaming).

        A stream is hung up once nobody watches it; ``hold`` keeps it while the hub records the unit (an SOS,
        an operator's recording), since every session being recorded by default must not keep every call."""
        if not self.is_device(unit.id):
            return
        stream = self._streams.get(unit.id)
        if stream is None or stream.publisher is None or self._hub.publisher(unit.id) is not stream.publisher:
            if self._hub.publisher(unit.id) is not None and stream is None:
                return  # the unit streams some other way (WHIP)
            if stream is not None and stream.publisher is not None:  # its session ended: the supervisor is late
                self._hang_up(stream, "the media session ended")
            opening = self._opening.get(unit.id)
            if opening is None:
                opening = asyncio.create_task(self._open(unit), name=f"gb28181-invite-{unit.id}")
                self._opening[unit.id] = opening
                opening.add_done_callback(lambda _: self._opening.pop(unit.id, None))
            stream = await asyncio.shield(opening)
        stream.held |= hold
        stream.idle_since = None
        if stream.mime != H264 and not hold:
            log.info("gb28181: unit %s sends %s: recorded, not viewable live", unit.id, stream.mime)
            raise Conflict(f"unit {unit.id} sends {stream.mime}, which browsers cannot play over WebRTC without "
                           f"transcoding (not done here); it can still be recorded, or set the device to "
                           f"H.264")  # fmt: skip

    def open_and_record(self, unit_id: UnitId, reason: str, start_recording: Callable[[UnitId, str], bool]) -> None:
        """An SOS from a GB unit: open its video (a task owned here) and record it, as for WHIP units."""
        if not self.is_device(unit_id):
            return

        async def work() -> None:
            try:
                await self.ensure(await self._store.get_unit(unit_id), hold=True)
            except Exception as exc:
                log.warning("gb28181: unit %s: cannot open its video for %s: %s", unit_id, reason, exc)
                return
            start_recording(unit_id, reason)

        task = asyncio.create_task(work(), name=f"gb28181-sos-{unit_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # opening ----------------------------------------------------------------------------------------
    async def _open(self, unit: Unit) -> LiveStream:
        registration = self._service.registration(unit.id)
        if registration is None:
            raise ServiceUnavailable(f"unit {unit.id} is not registered as a GB/T 28181 device on this server")
        device_id = registration.device.device_id
        channel_id = await self._channel(unit.id, device_id)
        device = await self._store.gb_device_of(unit.id)  # read now: an admin may have changed its transport
        tcp = rtp_transport(device or registration.device, self._settings) == "tcp-passive"
        self._sequence += 1
        y = live_ssrc(self._settings.domain, self._sequence)
        stream = LiveStream(unit, device_id, channel_id, 0, int(y), {registration.peer.address[0]}, {int(y)}, tcp)
        stream.first_keyframe = asyncio.get_running_loop().create_future()
        await self._bind(stream)
        self._streams[unit.id] = stream
        try:
            media_address = self._settings.media_address or registration.peer.local[0]
            offer = invite_offer(channel_id, media_address, stream.port, y, tcp=stream.tcp)
            timeout = self._settings.invite_timeout_seconds
            try:
                stream.dialog = await self._service.invite(unit.id, channel_id, offer, within_seconds=timeout)
            except DeviceUnavailable as exc:
                raise ServiceUnavailable(str(exc)) from None
            stream.dialog.on_bye = lambda: self._stop_later(stream, "the device hung up")
            try:
                answer = parse_answer(stream.dialog.answer)
            except SdpError as exc:
                log.warning("gb28181: device %s (unit %s): unusable SDP answer: %s", device_id, unit.id, exc)
                raise ServiceUnavailable(f"the device of unit {unit.id} answered with unusable SDP: {exc}") from None
            stream.hosts.add(answer.address)
            if answer.ssrc is not None:
                stream.ssrcs.add(answer.ssrc)
            try:
                async with asyncio.timeout(timeout):
                    first = await stream.first_keyframe
            except TimeoutError:
                log.warning("gb28181: device %s (unit %s) accepted but sent no keyframe in %.0f s (RTP port %d; %d "
                            "packets not invited, %d not RTP)", device_id, unit.id, timeout, stream.port,
                            stream.foreign_packets, stream.bad_packets)  # fmt: skip
                raise ServiceUnavailable(f"the device of unit {unit.id} sent no video in {timeout:g} s") from None
            media = {"video": first.mime}
            if audio := stream.audio_codec():
                media["audio"] = audio
            stream.publisher = await self._hub.attach(unit, media, _GbLink(self, stream), talk_mime=PCMA)
            stream.mime = first.mime
            stream.sink = self._hub.frame_sink(stream.publisher, "video")
            if audio:
                stream.audio_mime = audio
                stream.audio_sink = self._hub.frame_sink(stream.publisher, "audio")
            stream.deliver(first)
            self._talkback(stream)
            log.info("gb28181: unit %s (device %s, channel %s) live on RTP port %d (%s)", unit.id, device_id,
                     channel_id, stream.port, "TCP" if stream.tcp else "UDP")  # fmt: skip
            return stream
        except BaseException:
            self._hang_up(stream, "opening failed")
            raise

    def _talkback(self, stream: LiveStream) -> None:
        """Serve the session's talkback track as a GB broadcast, in a task owned by the stream."""
        track = getattr(stream.publisher, "talk", None)
        if track is None:
            return
        talkback = Talkback(self._service, stream.unit, track, host=self._host,
                            media_address=lambda: self._settings.media_address, platform_id=self._settings.platform_id,
                            within_seconds=self._settings.invite_timeout_seconds,
                            idle_seconds=max(1.0, self._settings.media_linger_seconds))  # fmt: skip
        stream.talkback = asyncio.create_task(talkback.run(), name=f"gb28181-talkback-{stream.unit.id}")
        self._tasks.add(stream.talkback)  # cancelled with the stream; awaited at close
        stream.talkback.add_done_callback(self._tasks.discard)

    async def _channel(self, unit_id: UnitId, device_id: str) -> str:
        """The camera channel to ask for: the first camera of the device's catalog, else the device itself."""
        channels = await self._store.gb_channels(unit_id)
        cameras = [c for c in channels if c.channel_id[10:13] in CAMERA_TYPES]
        online = [c for c in cameras if c.status.upper() in ("ON", "ONLINE", "OK", "")]
        chosen = online or cameras
        return chosen[0].channel_id if chosen else device_id

    async def _bind(self, stream: LiveStream) -> None:
        loop = asyncio.get_running_loop()
        ports = self._ports
        for attempt in range(len(ports)):
            port = ports[(self._next_port + attempt) % len(ports)]
            try:
                if stream.tcp:
                    stream.listener = await asyncio.start_server(RtpOverTcp(stream).connection, self._host, port)
                else:
                    stream.socket, _ = await loop.create_datagram_endpoint(
                        lambda: _RtpSocket(stream), local_addr=(self._host, port)
                    )
                    widen_receive_buffer(stream.socket, RTP_RECEIVE_BUFFER, f"RTP {port}")
            except OSError:
                continue
            self._next_port = (self._next_port + attempt + 1) % len(ports)
            stream.port = port
            return
        raise ServiceUnavailable(f"no RTP port free in {self._settings.rtp_port_range}", retry_after=5)

    # ending -----------------------------------------------------------------------------------------
    def _hang_up(self, stream: LiveStream, reason: str) -> None:
        """BYE (when the call was made), close the socket, forget the stream. The hub's session is ended by
        whoever calls this when it is still the stream's. Idempotent: the hub's close of the session's link
        comes here too."""
        if stream.ended:
            return
        stream.ended = True
        if self._streams.get(stream.unit.id) is stream:
            del self._streams[stream.unit.id]
        if stream.dialog is not None:
            self._service.bye(stream.dialog)
        if stream.socket is not None:
            stream.socket.close()
            stream.socket = None
        if stream.listener is not None:
            stream.listener.close()
            stream.listener = None
        for connection in list(stream.connections):
            connection.cancel()
        if stream.talkback is not None:
            stream.talkback.cancel()
        log.info("gb28181: unit %s live video ended (%s): %d frames, %d audio frames (%s), %d packets not invited, "
                 "%d not RTP, %d audio frames dropped, %d broken, %d packets of streams not taken", stream.unit.id,
                 reason, stream.frames, stream.audio_frames, stream.audio_mime or "no audio", stream.foreign_packets,
                 stream.bad_packets, stream.audio_frames_dropped, stream.audio_errors,
                 stream.receiver.demuxer.unhandled)  # fmt: skip

    def _stop_later(self, stream: LiveStream, reason: str) -> None:
        async def stop() -> None:
            self._hang_up(stream, reason)
            if stream.publisher is not None and self._hub.publisher(stream.unit.id) is stream.publisher:
                await self._hub.end_unit(stream.unit.id, reason)

        task = asyncio.create_task(stop(), name=f"gb28181-stop-{stream.unit.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self) -> None:
        linger = self._settings.media_linger_seconds
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            now = self._clock()
            for unit_id, stream in list(self._streams.items()):
                if stream.publisher is None:
                    continue  # still opening
                if self._hub.publisher(unit_id) is not stream.publisher:
                    self._hang_up(stream, "the media session ended")
                elif self._hub.viewers_of(unit_id) or (stream.held and self._hub.recording(unit_id)):
                    stream.idle_since = None
                elif stream.idle_since is None:
                    stream.idle_since = now
                elif now - stream.idle_since >= linger:
                    self._stop_later(stream, f"no viewer and no recording for {linger:g} s")


class _GbLink:
    """A device's call as the hub's ``PublisherLink``: connected while the call stands, keyframes asked with
    MANSCDP's IFrameCmd, closed by hanging up (the hub closes it when the session ends: replaced, silent,
    revoked)."""

    def __init__(self, live: LiveStreams, stream: LiveStream) -> None:
        self._live = live
        self._stream = stream

    @property
    def state(self) -> str:
        return "closed" if self._stream.ended else "connected"

    async def request_keyframe(self) -> int | None:
        if self._stream.ended or self._stream.dialog is None:
            return 0
        self._live._service.request_keyframe(self._stream.dialog)
        return 1

    async def close(self) -> None:
        self._live._hang_up(self._stream, "the media session ended")
