"""Forward encoded frames through aiortc without decoding or encoding them: every aiortc internal
the media work relies on lives here, and ``check_internals`` (run at start and by the tests) says
loudly when an aiortc release moved one.

aiortc 1.16 decodes every received frame (``RTCRtpReceiver`` → decoder thread) and encodes for every
sender; it has no public way to forward compressed media (aiortc issues 449, 939). What we use:

* Receiving: ``RTCRtpReceiver._handle_rtp_packet`` hands each reassembled frame, as
  ``(codec, JitterFrame)``, to ``self.__decoder_queue.put``, a ``queue.Queue`` read by the decoder
  thread that ``receive()`` starts. ``tap_receiver`` replaces that queue, before ``receive()``, with one
  whose ``put`` gives the frame to us on the event loop and lets only the final ``None`` through, so the
  thread idles until it is told to stop and nothing is ever decoded.
* Asking the unit for a keyframe: ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)``, with the SSRCs from the
  public ``getSynchronizationSources()``.
* Sending: ``RTCRtpSender`` packs a track's ``av.Packet`` (instead of encoding a ``Frame``) with the
  codec's ``Encoder.pack``; that path is the one ``MediaPlayer(decode=False)`` uses. ``EncodedTrack``
  yields such packets.
* Frame assembly: the receiver's ``__jitter_buffer`` hands a frame on only when the first packet of the
  next one arrives (a frame interval late: 33 ms at 30 fps), and holds audio four packets deep (80 ms).
  ``tap_receiver`` swaps in ``FrameAssembler``, which also completes a video frame on its RTP marker bit
  (RFC 7741 §4.1, RFC 6184 §5.1: set on a frame's last packet) and hands each audio packet (one Opus frame)
  on at once.
* A viewer's keyframe request: RTCP PLI/FIR reach ``RTCRtpSender._handle_rtcp_packet``, which only
  flags its encoder; ``on_keyframe_request`` wraps it on the instance to pass the request to the unit.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import queue
from collections.abc import Callable
from typing import Any, TypeAlias

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc import rtcrtpsender as _sender_module
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket
from av.packet import Packet
from av.stream import Stream

from media.frames import Feed

log = logging.getLogger(__name__)

#: (mime type, encoded frame, RTP timestamp from the first frame, clock rate)
FrameSink = Callable[[str, bytes, int, int], None]
EncodedPacket: TypeAlias = "Packet[Stream]"

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_KIND = "_RTCRtpReceiver__kind"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_SENDER_ENCODER = "_RTCRtpSender__encoder"


class PassthroughUnavailable(RuntimeError):
    """This aiortc no longer has the internals passthrough needs (see ``check_internals``)."""


class _TapQueue(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue: frames go to the sink, only the stop marker is queued."""

    def __init__(self, sink: FrameSink) -> None:
        super().__init__()
        self._sink = sink
        self.frames = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # receiver stopping: let the idle decoder thread end the remote track
            super().put(None, block, timeout)
            return
        codec, frame = item
        self.frames += 1
        try:
            self._sink(codec.mimeType, frame.data, frame.timestamp, codec.clockRate)
        except Exception:  # never let a forwarding bug break aiortc's RTP handling
            log.exception("passthrough: frame sink failed")


class FrameAssembler(JitterBuffer):
    """aiortc's jitter buffer, but a frame is handed on as soon as it is complete: on the RTP marker bit of
    its last packet (video), or at once (audio: every packet is a frame)."""

    def __init__(self, *, video: bool) -> None:
        super().__init__(capacity=512 if video else 64, prefetch=0, is_video=video)
        self._video = video

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        return frame if frame is not None else self._complete()

    def _complete(self) -> JitterFrame | None:
        """The contiguous run at the buffer's start, if it is a whole frame already."""
        if self._origin is None:
            return None
        packets: list[Any] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker or not self._video:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)
        return None


def tap_receiver(receiver: RTCRtpReceiver, sink: FrameSink) -> None:
    """Give every frame this receiver reassembles to ``sink`` instead of its decoder, as soon as the frame
    is complete. Call before the connection starts receiving (right after ``addTransceiver``)."""
    current = getattr(receiver, _DECODER_QUEUE, None)
    untouched = isinstance(current, queue.Queue) and not isinstance(current, _TapQueue)
    if not untouched or getattr(receiver, _DECODER_THREAD, "missing") is not None:
        raise PassthroughUnavailable("RTCRtpReceiver's decoder queue is not where passthrough expects it")
    if not isinstance(getattr(receiver, _JITTER_BUFFER, None), JitterBuffer):
        raise PassthroughUnavailable("RTCRtpReceiver's jitter buffer is not where passthrough expects it")
    setattr(receiver, _DECODER_QUEUE, _TapQueue(sink))
    setattr(receiver, _JITTER_BUFFER, FrameAssembler(video=getattr(receiver, _RECEIVER_KIND, "video") == "video"))


def tapped_frames(receiver: RTCRtpReceiver) -> int:
    """Frames this tapped receiver has forwarded (0 when it is not tapped)."""
    tap = getattr(receiver, _DECODER_QUEUE, None)
    return tap.frames if isinstance(tap, _TapQueue) else 0


async def request_keyframe(receiver: RTCRtpReceiver) -> int:
    """Send RTCP PLI (RFC 4585 §6.3.1) for every SSRC the receiver heard lately; the count sent."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return len(sources)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote peer asks this sender for a keyframe (PLI or FIR)."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            callback()
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def on_audio_level(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Call ``callback`` with each received RTP packet's RFC 6464 audio level (0 loudest … 127 silent,
    −dBov), for senders that send the extension (aiortc offers it in its answers; Chromium sends it)."""
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            callback(int(level[1]))
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def sender_encoded(sender: RTCRtpSender) -> bool:
    """Whether this sender ever encoded a frame (instead of packing the encoded ones it was given)."""
    encoder = getattr(sender, _SENDER_ENCODER, None)
    if encoder is None:
        return False
    if hasattr(encoder, "first_packet_pts"):  # OpusEncoder opens its context at once; encode() sets this
        return encoder.first_packet_pts is not None
    return getattr(encoder, "codec", None) is not None  # Vp8Encoder, H264Encoder: opened by encode()


def make_packet(data: bytes, pts: int, clock_rate: int) -> EncodedPacket:
    """One encoded frame as the ``av.Packet`` a sender packs; shared by every viewer (read only)."""
    packet: EncodedPacket = av.Packet(data)
    packet.pts = pts
    packet.time_base = fractions.Fraction(1, clock_rate)
    return packet


class EncodedTrack(MediaStreamTrack):
    """A viewer's outgoing track: yields the unit's encoded frames from a bounded ``Feed``."""

    def __init__(self, kind: str, feed: Feed[EncodedPacket]) -> None:
        super().__init__()
        self.kind = kind
        self.feed = feed
        self._ready = asyncio.Event()

    def wake(self) -> None:
        self._ready.set()

    async def recv(self) -> EncodedPacket:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            packet = self.feed.pop()
            if packet is not None:
                return packet
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


async def check_internals() -> list[str]:
    """What passthrough needs from aiortc and is missing; empty when all is in place."""
    problems = []

    def source(obj: Any) -> str:
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            return ""

    handle_rtp = source(_receiver_module.RTCRtpReceiver._handle_rtp_packet)
    if "self.__jitter_buffer.add(packet)" not in handle_rtp:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer assembles frames with __jitter_buffer.add")
    if "def _remove_frame" not in source(JitterBuffer) or "_packets" not in source(JitterBuffer.__init__):
        problems.append("JitterBuffer no longer keeps _packets and _remove_frame")
    if "__decoder_queue.put((codec, encoded_frame))" not in handle_rtp:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer puts (codec, frame) on __decoder_queue")
    worker = source(_receiver_module.decoder_worker)
    if "input_q.get()" not in worker or "if task is None" not in worker:
        problems.append("decoder_worker no longer reads the queue it is given until None")
    receive = source(_receiver_module.RTCRtpReceiver.receive)
    if "self.__decoder_queue" not in receive:
        problems.append("RTCRtpReceiver.receive no longer hands __decoder_queue to the decoder thread")
    if not inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)):
        problems.append("RTCRtpReceiver._send_rtcp_pli is gone")
    next_frame = source(_sender_module.RTCRtpSender._next_encoded_frame)
    if "isinstance(data, Frame)" not in next_frame or ".pack(data)" not in next_frame:
        problems.append("RTCRtpSender no longer packs pre-encoded av.Packet data")
    if not inspect.iscoroutinefunction(getattr(RTCRtpSender, "_handle_rtcp_packet", None)):
        problems.append("RTCRtpSender._handle_rtcp_packet is gone")
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        if not isinstance(getattr(transceiver.receiver, _DECODER_QUEUE, None), queue.Queue):
            problems.append("a new RTCRtpReceiver has no __decoder_queue")
        if not isinstance(getattr(transceiver.receiver, _JITTER_BUFFER, None), JitterBuffer):
            problems.append("a new RTCRtpReceiver has no __jitter_buffer")
        if getattr(transceiver.receiver, _RECEIVER_KIND, None) != "video":
            problems.append("a new RTCRtpReceiver does not keep its __kind")
        if not hasattr(transceiver.sender, _SENDER_ENCODER):
            problems.append("a new RTCRtpSender has no __encoder")
    finally:
        await pc.close()
    return problems
