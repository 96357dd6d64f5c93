"""A GB/T 28181 device as a court's body camera behaves: it registers over UDP with Digest, keeps alive,
reports MobilePosition as it walks, answers the platform's Catalog query, SUBSCRIBE and MESSAGEs with 200,
and, when it has a camera, answers an INVITE for live video by streaming MPEG-PS over RTP (``sender``)
to the address, port and SSRC of the offer until the platform's BYE. For the demo and the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from gb28181 import digest, sip
from gb28181.manscdp import CHINA
from gb28181.media.sdp import SdpError, parse_answer
from persistence.models import UnitKind
from simulators.gb28181.sender import send_clip
from simulators.units.routes import RouteWalker

log = logging.getLogger(__name__)


#: RFC 3261 §17.1.2.2 over UDP: a MESSAGE is sent again after T1, then at doubling intervals up to T2, until a
#: final answer, and given up after 64·T1 (Timer F). A platform too busy to read its socket loses nothing then.
T1, T2, TIMER_F = 0.5, 4.0, 32.0


def device_ids(domain: str, count: int, first: int = 1) -> list[str]:
    """20-digit ids: the domain, type 132 (network camera), a 7-digit sequence (GB/T 28181 Annex D)."""
    return [f"{domain}132{n:07d}" for n in range(first, first + count)]


def _china_now(*, milliseconds: bool = False) -> str:
    text = datetime.now(CHINA).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] if milliseconds else text[:-7]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, device: SimulatedDevice) -> None:
        self._device = device

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._device.received(data)


class SimulatedDevice:
    def __init__(self, device_id: str, password: str, server: tuple[str, int], *, domain: str, platform_id: str,
                 seed: int, clip: Sequence[tuple[bytes, bool]] | None = None, keepalive_seconds: float = 30.0,
                 position_seconds: float = 5.0, host: str = "127.0.0.1",
                 on_sent: Callable[[bytes], None] | None = None, precise_time: bool = False,
                 linger_seconds: float = 0.0, audio: Sequence[bytes] | None = None) -> None:  # fmt: skip
        self.device_id = device_id
        self._password = password
        self._server = server
        self._domain = domain
        self._platform = platform_id
        self._clip = clip  # None: no camera (INVITE answered 488)
        self._audio = audio  # G.711A for each picture of the clip, in the same packs; None: no microphone
        self._keepalive = keepalive_seconds
        self._position = position_seconds
        self._host = host
        self._on_sent = on_sent  # each picture as it leaves (the benchmark's latency clock)
        #: MobilePosition Time with milliseconds (XML dateTime allows a fraction; most devices send whole
        #: seconds): the benchmark measures device→screen latency from it.
        self._precise_time = precise_time
        self._linger = linger_seconds  # after the stop, go on sending unanswered MESSAGEs again this long
        self._walker = RouteWalker(UnitKind.BODY_CAMERA, seed)
        self._endpoint: asyncio.DatagramTransport | None = None
        self._port = 0
        self._call_id = f"{secrets.token_hex(8)}@{host}"
        self._tag = sip.new_tag()
        self._cseq = 0
        self._sn = 0
        self._answers: dict[int, asyncio.Future[sip.SipMessage]] = {}
        #: MESSAGEs not answered yet, by CSeq: (bytes, when to send again, interval, when to give up)
        self._unanswered: dict[int, tuple[bytes, float, float, float]] = {}
        self._streams: dict[str, asyncio.Task[int]] = {}  # by Call-ID
        self.registered = False
        self.positions_sent = 0
        self.streams_served = 0
        self.retransmissions = 0
        self._given_up = 0  # MESSAGEs unanswered after Timer F
        self._answered_all = asyncio.Event()  # set when the last unanswered MESSAGE is answered

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._endpoint, _ = await loop.create_datagram_endpoint(lambda: _Socket(self), local_addr=(self._host, 0))
        self._port = self._endpoint.get_extra_info("sockname")[1]
        try:
            await self._register()
            next_keepalive = next_position = loop.time()
            while not stop.is_set():
                now = loop.time()
                if now >= next_keepalive:
                    self._message("Notify", "Keepalive", "<Status>OK</Status>\r\n")
                    next_keepalive = now + self._keepalive
                if now >= next_position:
                    self._report_position()
                    next_position = now + self._position
                wake = min(next_keepalive, next_position, self._retransmit(loop.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, wake - loop.time()))
            give_up = loop.time() + self._linger
            while self._unanswered and (left := give_up - loop.time()) > 0:
                wake = self._retransmit(loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered_all.wait(), max(0.0, min(left, wake - loop.time())))
        finally:
            for task in self._streams.values():
                task.cancel()
            await asyncio.gather(*self._streams.values(), return_exceptions=True)
            self._endpoint.close()

    @property
    def messages_unanswered(self) -> int:
        """MESSAGEs given up without a final answer, and those still waiting for one."""
        return self._given_up + len(self._unanswered)

    # registering ------------------------------------------------------------------------------------
    async def _register(self) -> None:
        first = await self._request_and_wait(self._register_request(None))
        if first.status == 401:
            challenge = digest.parse_credentials(first.get("www-authenticate") or "") or {}
            answer = await self._request_and_wait(self._register_request(challenge))
        else:
            answer = first
        if answer.status != 200:
            raise RuntimeError(f"device {self.device_id}: REGISTER answered {answer.status} {answer.reason}")
        self.registered = True

    def _register_request(self, challenge: dict[str, str] | None) -> sip.SipMessage:
        uri = f"sip:{self._platform}@{self._domain}"
        request = self._request("REGISTER", uri, to=f"<sip:{self.device_id}@{self._domain}>")
        request.headers.append(("contact", f"<sip:{self.device_id}@{self._host}:{self._port}>"))
        request.headers.append(("expires", "3600"))
        if challenge is not None:
            realm, nonce, cnonce, nc = (
                challenge.get("realm", ""),
                challenge.get("nonce", ""),
                secrets.token_hex(8),
                "00000001",
            )
            ha1 = digest.ha1(self.device_id, realm, self._password)
            response = digest.md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{digest.md5_hex(f'REGISTER:{uri}')}")
            request.headers.append(("authorization", f'Digest username="{self.device_id}", realm="{realm}", '
                                    f'nonce="{nonce}", uri="{uri}", response="{response}", algorithm=MD5, '
                                    f'qop=auth, nc={nc}, cnonce="{cnonce}"'))  # fmt: skip
        return request

    async def _request_and_wait(self, request: sip.SipMessage) -> sip.SipMessage:
        number = request.cseq[0]
        waiter: asyncio.Future[sip.SipMessage] = asyncio.get_running_loop().create_future()
        self._answers[number] = waiter
        try:
            for pause in (0.5, 1.0, 2.0, 4.0, 4.0):
                self._send(request)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter), pause)
            raise RuntimeError(f"device {self.device_id}: no answer to {request.method}")
        finally:
            self._answers.pop(number, None)

    # reporting --------------------------------------------------------------------------------------
    def _report_position(self) -> None:
        fix = self._walker.step(self._position)
        heading = 0.0 if fix.heading_deg is None else fix.heading_deg
        fields = [("Time", _china_now(milliseconds=self._precise_time)), ("Longitude", f"{fix.lon:.7f}"),
                  ("Latitude", f"{fix.lat:.7f}"),
                  ("Speed", f"{fix.speed_mps * 3.6:.1f}"), ("Direction", f"{heading:.1f}"),
                  ("Altitude", f"{fix.altitude_m:.0f}")]  # fmt: skip
        self._message("Notify", "MobilePosition", "".join(f"<{k}>{v}</{k}>\r\n" for k, v in fields))
        self.positions_sent += 1

    def _retransmit(self, now: float) -> float:
        """Send again the MESSAGEs whose timer fired (RFC 3261 Timer E); when the next one fires."""
        wake = now + TIMER_F
        for cseq, (data, due, interval, give_up) in list(self._unanswered.items()):
            if now >= give_up:
                del self._unanswered[cseq]
                self._given_up += 1
                continue
            if now >= due:
                self._send_bytes(data)
                self.retransmissions += 1
                interval = min(2 * interval, T2)
                due = now + interval
                self._unanswered[cseq] = (data, due, interval, give_up)
            wake = min(wake, due)
        return wake

    def _message(self, root: str, cmd_type: str, fields: str) -> None:
        self._sn += 1
        body = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<{root}>\r\n<CmdType>{cmd_type}</CmdType>\r\n'
                f"<SN>{self._sn}</SN>\r\n<DeviceID>{self.device_id}</DeviceID>\r\n{fields}</{root}>\r\n")  # fmt: skip
        request = self._request(
            "MESSAGE", f"sip:{self._platform}@{self._domain}", to=f"<sip:{self._platform}@{self._domain}>"
        )
        request.headers.append(("content-type", "Application/MANSCDP+xml"))
        request.body = body.encode("gb18030")
        data = request.serialise()
        now = asyncio.get_running_loop().time()
        self._unanswered[self._cseq] = (data, now + T1, T1, now + TIMER_F)
        self._answered_all.clear()
        self._send_bytes(data)

    def _request(self, method: str, uri: str, *, to: str) -> sip.SipMessage:
        self._cseq += 1
        request = sip.SipMessage(method=method, uri=uri)
        request.headers = [
            ("via", f"SIP/2.0/UDP {self._host}:{self._port};rport;branch=z9hG4bK{secrets.token_hex(8)}"),
            ("from", f"<sip:{self.device_id}@{self._domain}>;tag={self._tag}"),
            ("to", to),
            ("call-id", self._call_id if method == "REGISTER" else f"{secrets.token_hex(8)}@{self._host}"),
            ("cseq", f"{self._cseq} {method}"),
            ("max-forwards", "70"),
        ]
        return request

    def _send(self, message: sip.SipMessage) -> None:
        self._send_bytes(message.serialise())

    def _send_bytes(self, data: bytes) -> None:
        if self._endpoint is not None and not self._endpoint.is_closing():
            self._endpoint.sendto(data, self._server)

    # the platform's requests ------------------------------------------------------------------------
    def received(self, data: bytes) -> None:
        try:
            message = sip.parse(data, max_bytes=65_535)
        except sip.SipParseError as exc:
            log.warning("device %s: unreadable message from the platform: %s", self.device_id, exc)
            return
        if not message.is_request:
            if message.status >= 200 and message.cseq[0] in self._unanswered:
                del self._unanswered[message.cseq[0]]
                if not self._unanswered:
                    self._answered_all.set()
            waiter = self._answers.get(message.cseq[0])
            if waiter is not None and not waiter.done() and message.status >= 200:
                waiter.set_result(message)
            return
        if message.method == "INVITE":
            self._invited(message)
        elif message.method == "BYE":
            task = self._streams.pop(message.call_id, None)
            if task is not None:
                task.cancel()
            self._send(sip.response(message, 200))
        elif message.method != "ACK":
            self._send(sip.response(message, 200))

    def _invited(self, invite: sip.SipMessage) -> None:
        try:
            offer = parse_answer(invite.body)  # the platform's offer: where to send (c=, m=) and the SSRC (y=)
        except SdpError:
            self._send(sip.response(invite, 400))
            return
        if self._clip is None or offer.ssrc is None:
            self._send(sip.response(invite, 488))
            return
        tcp = offer.transport.upper().startswith("TCP")  # the platform listens: we connect (a=setup:active)
        lines = [
            "v=0",
            f"o={self.device_id} 0 0 IN IP4 {self._host}",
            "s=Play",
            f"c=IN IP4 {self._host}",
            "t=0 0",
            f"m=video {self._port + 1} {'TCP/RTP/AVP' if tcp else 'RTP/AVP'} 96",
            "a=sendonly",
            *(["a=setup:active", "a=connection:new"] if tcp else []),
            "a=rtpmap:96 PS/90000",
            f"y={offer.ssrc:010d}",
        ]
        sdp = "\r\n".join(lines) + "\r\n"  # a retransmitted INVITE is answered again, and streamed once
        contact = [
            ("Contact", f"<sip:{self.device_id}@{self._host}:{self._port}>"),
            ("Content-Type", "Application/SDP"),
        ]
        self._send(sip.response(invite, 200, extra=contact, body=sdp.encode("ascii")))
        if invite.call_id not in self._streams:
            clip = self._clip
            task = asyncio.create_task(send_clip(clip, offer.ssrc, (offer.address, offer.port), loops=1_000_000,
                                                 source=self._host, on_sent=self._on_sent, tcp=tcp,
                                                 audio=self._audio),
                                       name=f"gb-video-{self.device_id}")  # fmt: skip
            self._streams[invite.call_id] = task
            task.add_done_callback(lambda _: self._streams.pop(invite.call_id, None))
            self.streams_served += 1
