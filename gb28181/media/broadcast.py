"""Talkback to a GB/T 28181 unit (语音广播, Broadcast, GB/T 28181-2016 §9.12): the operator's PCMA, as sent.

While a GB unit's video is open its hub session carries a talkback track (``Publisher.talk``, codec PCMA):
an operator's ``POST /api/talk/<unit>`` negotiates PCMA with the browser and its frames land there untouched.
``Talkback.run`` reads that track: on the first frame it sends the device the MANSCDP ``Notify Broadcast``,
answers the INVITE the device then sends for the audio (it must take PCMA, payload 8, over RTP/UDP) and
sends each frame to the address and port of the device's offer as one RTP packet with the device's ``y=``
SSRC: no decoding, no transcoding. The call is hung up (BYE) after ``idle_seconds`` without a frame (the
operator let go of push-to-talk), when the device hangs up, or with the video.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from fractions import Fraction

from aiortc.mediastreams import MediaStreamError

from gb28181.media.rtp import build_rtp
from gb28181.media.sdp import AudioOffer, SdpError, audio_answer, parse_audio_offer
from gb28181.service import DeviceUnavailable, Dialog, GbService
from media.passthrough import EncodedTrack
from persistence.models import Unit

log = logging.getLogger(__name__)

PCMA = "audio/PCMA"
RATE = 8_000
RETRY_SECONDS = 5.0  # after a device did not take the broadcast, frames are dropped this long before asking again


class _Sender(asyncio.DatagramProtocol):
    pass


class Talkback:
    """One GB unit's talkback while its video is open."""

    def __init__(
        self,
        service: GbService,
        unit: Unit,
        track: EncodedTrack,
        *,
        host: str,
        media_address: Callable[[], str],
        platform_id: str,
        within_seconds: float,
        idle_seconds: float,
    ) -> None:
        self._service = service
        self._unit = unit
        self._track = track
        self._host = host
        self._media_address = media_address
        self._platform_id = platform_id
        self._within = within_seconds
        self._idle = idle_seconds
        self._dialog: Dialog | None = None
        self._socket: asyncio.DatagramTransport | None = None
        self._target: tuple[str, int] = ("", 0)
        self._offer: AudioOffer | None = None
        self._sequence = secrets.randbelow(1 << 16)
        self._refused_until = 0.0
        self.sent = 0  # RTP packets sent to the device
        self.calls = 0  # broadcasts the device took

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle if self._dialog is not None else None):
                        packet = await self._track.recv()
                except TimeoutError:
                    self._hang_up("push-to-talk released")
                    continue
                if self._dialog is None:
                    if loop.time() < self._refused_until:
                        continue
                    try:
                        await self._open()
                    except (DeviceUnavailable, SdpError, OSError) as exc:
                        log.warning("gb28181: unit %s: broadcast refused: %s", self._unit.id, exc)
                        self._refused_until = loop.time() + RETRY_SECONDS
                        continue
                pts, time_base = packet.pts or 0, packet.time_base or Fraction(1, RATE)
                self._send(bytes(packet), int(pts * time_base * RATE))
        except MediaStreamError:
            pass
        finally:
            self._hang_up("the video ended")

    async def _open(self) -> None:
        invite, registration, peer = await self._service.broadcast(self._unit.id, within_seconds=self._within)
        try:
            offer = parse_audio_offer(invite.body, registration.peer.address[0])
        except SdpError:
            self._service.refuse(invite, peer, 488)
            raise
        loop = asyncio.get_running_loop()
        self._socket, _ = await loop.create_datagram_endpoint(_Sender, local_addr=(self._host, 0))
        port = self._socket.get_extra_info("sockname")[1]
        answer = audio_answer(self._platform_id, self._media_address() or peer.local[0], port, offer)
        self._dialog = self._service.accept_broadcast(invite, registration, peer, answer)
        self._dialog.on_bye = lambda: self._hang_up("the device hung up", bye=False)
        self._offer, self._target = offer, (offer.address, offer.port)
        self.calls += 1

    def _send(self, payload: bytes, timestamp: int) -> None:
        if self._socket is None or self._offer is None:
            return
        ssrc = self._offer.ssrc if self._offer.ssrc is not None else 0
        self._sequence = (self._sequence + 1) & 0xFFFF
        packet = build_rtp(payload, sequence=self._sequence, timestamp=timestamp, ssrc=ssrc, marker=False,
                           payload_type=self._offer.payload_type)  # fmt: skip
        self._socket.sendto(packet, self._target)
        self.sent += 1

    def _hang_up(self, reason: str, *, bye: bool = True) -> None:
        if self._dialog is not None:
            if bye:
                self._service.bye(self._dialog)
            log.info("gb28181: unit %s broadcast ended (%s) after %d packets", self._unit.id, reason, self.sent)
        self._dialog = None
        self._offer = None
        if self._socket is not None:
            with contextlib.suppress(Exception):
                self._socket.close()
            self._socket = None
