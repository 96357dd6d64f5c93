"""The platform side of GB/T 28181 signalling: registrar, MANSCDP messages, subscriptions.

Requests arrive as bytes with the ``Peer`` they came from (a UDP address or a TCP connection, owned by
``transport``); answers and the platform's own requests go back through that peer. A device's events
become unit events through the tracker, on the same paths as WebSocket telemetry: a keepalive marks the
unit heard, a MobilePosition is validated and stored like any position, an alarm raises SOS.

No full SIP transaction layer: a retransmitted MESSAGE or NOTIFY answered in the last few seconds gets the
same answer again without being handled again (RFC 3261 §17.2.2: at 2,000 devices on a busy machine the
devices' retransmissions were four times their positions, each parsed and ingested anew; bench.gb28181);
other retransmitted requests are handled again, which every handler tolerates (positions are deduplicated by
their time-derived seq, alarms are one per condition, catalogs upserted); the platform's own
MESSAGE/SUBSCRIBE are sent once (a device that misses its Catalog query is asked again at its next
registration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from config.settings import Gb28181Settings
from core.ids import UnitId
from field_units.tracker import Tracker
from gb28181 import digest, manscdp, sip
from gb28181.throttle import FailureThrottle
from persistence.gb_port import GbChannel, GbDevice, GbStore
from persistence.models import Unit
from persistence.port import UnitStore

log = logging.getLogger(__name__)

DEVICE_ID_DIGITS = 20
MANSCDP_TYPE = "Application/MANSCDP+xml"
SUBSCRIPTION_SECONDS = 3600  # a MobilePosition subscription, renewed at every registration
ALLOW = "REGISTER, MESSAGE, NOTIFY, OPTIONS, ACK, BYE, INVITE"
SDP_TYPE = "Application/SDP"
INVITE_RETRANSMIT = (0.5, 1.0, 2.0, 4.0)  # RFC 3261 §17.1.1.2 timer A over UDP, until any answer is heard
#: How long a MESSAGE/NOTIFY's answer is kept for the device's retransmissions of it: a device resends after
#: 0.5, 1, 2 and 4 s (RFC 3261 Timer E), so 8 s covers all but the stragglers of Timer F (which are handled
#: again, harmlessly). At most ANSWERS_KEPT (about 8 s of 2,000 devices' messages at 2 a second each).
ANSWER_SECONDS = 8.0
ANSWERS_KEPT = 32_768


class GbServiceStore(GbStore, UnitStore, Protocol):
    """What the GB/T 28181 service needs of storage: devices, their channels, the units they are."""


class Peer(Protocol):
    """Where a message came from and how to send to it (``transport`` supplies UDP and TCP peers)."""

    transport: str  # "UDP" or "TCP"
    address: tuple[str, int]  # the device's address as seen here
    local: tuple[str, int]  # our address on that socket, for Via and Contact

    def send(self, data: bytes) -> None: ...

    @property
    def closed(self) -> bool: ...


#: Told of each new registration with a callback that ends it; returns the function that stops watching.
#: The app passes its revocation registry, so revoking the unit on any process ends the registration here.
Watcher = Callable[[Unit, Callable[[], None]], Callable[[], None]]


@dataclass
class Registration:
    unit: Unit
    device: GbDevice
    peer: Peer
    call_id: str
    expires_at: float
    release: Callable[[], None] = lambda: None


class DeviceUnavailable(Exception):
    """The device cannot be asked for video now: not registered here, refused the INVITE, or did not answer."""


@dataclass(eq=False)
class Dialog:
    """A live-video call the platform made (RFC 3261 §12): what its ACK, BYE and the device's BYE need."""

    device_id: str
    unit_id: UnitId
    channel_id: str
    call_id: str
    local_tag: str
    remote_tag: str
    target: str  # the device's Contact URI, where in-dialog requests go
    cseq: int
    peer: Peer
    answer: bytes  # the device's SDP
    on_bye: Callable[[], None] | None = None  # the device hung up


class GbService:
    def __init__(
        self,
        settings: Gb28181Settings,
        store: GbServiceStore,
        tracker: Tracker,
        *,
        clock: Callable[[], float] = time.time,
        watcher: Watcher | None = None,
    ) -> None:
        self._watcher = watcher
        self._settings = settings
        self._store = store
        self._tracker = tracker
        self._clock = clock
        self._nonces = digest.Nonces(settings.nonce_seconds)
        self._throttle = FailureThrottle(settings.failed_registers_per_minute)
        self._registrations: dict[str, Registration] = {}  # by device id
        self._sn = secrets.randbelow(100_000)
        self._cseq = 1
        self._sweeper: asyncio.Task[None] | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[sip.SipMessage]] = {}  # our INVITEs' final answers
        self._heard: set[tuple[str, int]] = set()  # INVITEs answered provisionally: no more retransmission
        self._dialogs: dict[str, Dialog] = {}  # by Call-ID
        self._broadcasts: dict[str, asyncio.Future[tuple[sip.SipMessage, Peer]]] = {}  # device id: its INVITE
        self._answers: dict[str, bytes] = {}  # Call-ID of a device's INVITE we accepted: our 200, resent on repeats
        #: (device id, Call-ID, CSeq) of MESSAGE/NOTIFYs answered → (when the answer expires, its bytes)
        self._messages_answered: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
        self.retransmissions_answered = 0  # requests answered again from ``_messages_answered`` without being handled

    # lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._expire_forever(), name="gb28181-registration-expiry")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # reading ------------------------------------------------------------------------------------------
    @property
    def max_message_bytes(self) -> int:
        return self._settings.max_message_bytes

    def registration(self, unit_id: UnitId) -> Registration | None:
        for registration in self._registrations.values():
            if registration.unit.id == unit_id:
                return registration
        return None

    def registered_units(self) -> set[UnitId]:
        return {registration.unit.id for registration in self._registrations.values()}

    def end_unit(self, unit_id: UnitId) -> None:
        """The unit was revoked: forget its registration, so its next request is refused."""
        for device_id, registration in list(self._registrations.items()):
            if registration.unit.id == unit_id:
                self._drop(device_id)
                log.info("gb28181: device %s (unit %s) revoked; registration dropped", device_id, unit_id)

    def _drop(self, device_id: str) -> Registration | None:
        registration = self._registrations.pop(device_id, None)
        if registration is not None:
            registration.release()
        return registration

    # input --------------------------------------------------------------------------------------------
    async def handle(self, data: bytes, peer: Peer) -> None:
        """One message from a device. Never raises: a bad message is answered or dropped, and logged."""
        try:
            msg = sip.parse(data, max_bytes=self._settings.max_message_bytes)
        except sip.SipParseError as exc:
            log.warning("gb28181: %s from %s:%s: %s", exc.status, *peer.address, exc.reason)
            if exc.partial is not None and exc.partial.is_request and exc.partial.method != "ACK":
                self._reply(peer, sip.response(exc.partial, exc.status))
            return
        if msg.method in ("MESSAGE", "NOTIFY"):
            answered = self._messages_answered.get(_transaction(msg))
            if answered is not None and answered[0] > self._clock():
                self.retransmissions_answered += 1
                if not peer.closed:
                    peer.send(answered[1])
                return
        if not msg.is_request:
            if self._invite_answer(msg):
                return
            if msg.status >= 300:
                log.warning("gb28181: %s answered %s %s to our %s", msg.from_user, msg.status, msg.reason, msg.cseq[1])
            return
        try:
            await self._dispatch(msg, peer)
        except Exception:
            log.exception("gb28181: %s from %s failed", msg.method, msg.from_user)
            self._reply(peer, sip.response(msg, 500))

    def answered(self, data: bytes) -> bool:
        """Take a datagram at once if it answers one of our INVITEs (see ``transport``); False otherwise."""
        try:
            msg = sip.parse(data, max_bytes=self._settings.max_message_bytes)
        except sip.SipParseError:
            return False
        return not msg.is_request and self._invite_answer(msg)

    def _invite_answer(self, msg: sip.SipMessage) -> bool:
        key = (msg.call_id, msg.cseq[0])
        waiter = self._waiting.get(key)
        if waiter is not None and msg.cseq[1] == "INVITE":
            self._heard.add(key)
            if msg.status >= 200 and not waiter.done():
                waiter.set_result(msg)
            return True
        dialog = self._dialogs.get(msg.call_id)
        if dialog is not None and msg.cseq == (dialog.cseq, "INVITE") and 200 <= msg.status < 300:
            self._in_dialog(dialog, "ACK", dialog.cseq)  # our ACK was lost: the device resends its 200
            return True
        return False

    async def _dispatch(self, msg: sip.SipMessage, peer: Peer) -> None:
        if msg.method == "REGISTER":
            await self._register(msg, peer)
        elif msg.method in ("MESSAGE", "NOTIFY"):
            await self._message(msg, peer)
        elif msg.method == "BYE":
            self._device_bye(msg, peer)
        elif msg.method == "INVITE":
            self._device_invite(msg, peer)
        elif msg.method == "OPTIONS":
            self._reply(peer, sip.response(msg, 200, extra=[("Allow", ALLOW)]))
        elif msg.method != "ACK":
            self._reply(peer, sip.response(msg, 405, extra=[("Allow", ALLOW)]))

    def _reply(self, peer: Peer, message: sip.SipMessage) -> None:
        if not peer.closed:
            peer.send(message.serialise())

    def _answer_once(self, request: sip.SipMessage, peer: Peer, answer: sip.SipMessage) -> None:
        """Send ``answer`` and keep it for the request's retransmissions (see ``ANSWER_SECONDS``)."""
        data = answer.serialise()
        now = self._clock()
        answers = self._messages_answered
        while answers and (len(answers) >= ANSWERS_KEPT or next(iter(answers.values()))[0] <= now):
            answers.popitem(last=False)  # kept in the order answered, so the oldest expire first
        answers[_transaction(request)] = (now + ANSWER_SECONDS, data)
        if not peer.closed:
            peer.send(data)

    # registrar ----------------------------------------------------------------------------------------
    async def _register(self, msg: sip.SipMessage, peer: Peer) -> None:
        now = self._clock()
        address = peer.address[0]
        device_id = msg.from_user or ""
        if self._throttle.blocked(address, now):
            retry = self._throttle.retry_after(address, now)
            log.warning("gb28181: REGISTER from %s for %s refused: too many failures", address, device_id)
            self._reply(peer, sip.response(msg, 503, extra=[("Retry-After", str(retry))]))
            return
        if len(device_id) != DEVICE_ID_DIGITS or not device_id.isdigit():
            self._reply(peer, sip.response(msg, 400))
            return
        device = await self._store.find_gb_device(device_id)
        if device is None:
            self._fail(msg, peer, 404, f"unknown device {device_id}")
            return
        unit = await self._store.get_unit(device.unit_id)
        if unit.revoked_at is not None:
            self.end_unit(unit.id)
            self._fail(msg, peer, 403, f"device {device_id} (unit {unit.id}) is revoked")
            return
        header = msg.get("authorization")
        credentials = digest.parse_credentials(header) if header else None
        if credentials is None:
            self._challenge(msg, peer, stale=False)
            return
        nonce = self._nonces.check(credentials.get("nonce", ""), now, address)
        if nonce == "stale":
            self._challenge(msg, peer, stale=True)
            return
        if (
            nonce != "ok"
            or credentials.get("username") != device_id
            or credentials.get("realm") != self._settings.domain
            or not digest.verify(credentials, method="REGISTER", stored_ha1=device.ha1)
        ):
            self._throttle.failed(address, now)
            log.warning("gb28181: device %s (unit %s) from %s: wrong digest", device_id, unit.id, address)
            self._challenge(msg, peer, stale=False)
            return
        expires = _expires(msg)
        if expires == 0:
            self._drop(device_id)
            self._reply(peer, sip.response(msg, 200, extra=[("Expires", "0"), ("Date", _gb_date())]))
            log.info("gb28181: device %s (unit %s) unregistered", device_id, unit.id)
            await self._tracker.gone(unit)
            return
        granted = min(expires, self._settings.max_expires_seconds)
        previous = self._registrations.get(device_id)
        registration = Registration(unit, device, peer, msg.call_id, now + granted)
        if previous is not None:
            registration.release = previous.release  # still watched
        elif self._watcher is not None:
            registration.release = self._watcher(unit, lambda: self.end_unit(unit.id))
        self._registrations[device_id] = registration
        contact = msg.get("contact") or f"<sip:{device_id}@{peer.address[0]}:{peer.address[1]}>"
        extra = [("Contact", contact), ("Expires", str(granted)), ("Date", _gb_date())]
        self._reply(peer, sip.response(msg, 200, extra=extra))
        await self._tracker.heard_from(unit)
        if previous is None or previous.peer is not peer or previous.call_id != msg.call_id:
            log.info("gb28181: device %s (unit %s) registered from %s/%s for %s s",
                     device_id, unit.id, peer.transport, address, granted)  # fmt: skip
            self._ask_catalog(device_id, peer)
            self._subscribe_positions(device_id, peer)

    def _challenge(self, msg: sip.SipMessage, peer: Peer, *, stale: bool) -> None:
        nonce = self._nonces.issue(self._clock(), peer.address[0])
        value = digest.challenge(self._settings.domain, nonce, stale=stale)
        self._reply(peer, sip.response(msg, 401, extra=[("WWW-Authenticate", value)]))

    def _fail(self, msg: sip.SipMessage, peer: Peer, status: int, why: str) -> None:
        self._throttle.failed(peer.address[0], self._clock())
        log.warning("gb28181: REGISTER from %s refused (%s): %s", peer.address[0], status, why)
        self._reply(peer, sip.response(msg, status))

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self._clock()
            for device_id, registration in list(self._registrations.items()):
                if registration.expires_at <= now:
                    self._drop(device_id)
                    log.info("gb28181: device %s (unit %s): registration expired", device_id, registration.unit.id)
                    try:
                        await self._tracker.gone(registration.unit)
                    except Exception:
                        log.exception("gb28181: marking unit %s offline failed", registration.unit.id)

    # MANSCDP ------------------------------------------------------------------------------------------
    async def _message(self, msg: sip.SipMessage, peer: Peer) -> None:
        device_id = msg.from_user or ""
        registration = self._registrations.get(device_id)
        if registration is None or registration.peer.address[0] != peer.address[0]:
            # MESSAGEs carry no credential (GB/T 28181 authenticates the REGISTER only): they are taken from
            # the address the device registered from, so knowing a device id is not enough to speak for it.
            why = "unregistered device" if registration is None else "another address than the registration's:"
            log.warning("gb28181: %s from %s %s at %s refused", msg.method, why, device_id, peer.address[0])
            self._reply(peer, sip.response(msg, 403))
            return
        registration.peer = peer  # a device may reconnect over TCP: answer where it is now
        try:
            doc = manscdp.parse(msg.body)
        except manscdp.ManscdpError as exc:
            log.warning("gb28181: device %s: %s refused: %s", device_id, msg.method, exc)
            self._reply(peer, sip.response(msg, 400))
            return
        self._answer_once(msg, peer, sip.response(msg, 200))
        unit = registration.unit
        if doc.cmd_type == "Catalog" and doc.root == "Response":
            await self._catalog(unit, doc)
            await self._tracker.heard_from(unit)
        elif doc.cmd_type == "MobilePosition":
            await self._position(unit, device_id, doc, sos=False)
        elif doc.cmd_type == "Alarm":
            log.warning("gb28181: device %s (unit %s): alarm (priority %s, method %s)", device_id, unit.id,
                        doc.fields.get("AlarmPriority", "?"), doc.fields.get("AlarmMethod", "?"))  # fmt: skip
            if doc.fields.get("Longitude") and doc.fields.get("Latitude"):
                await self._position(unit, device_id, doc, sos=True)
            await self._tracker.heard_from(unit, sos=True)
            # GB/T 28181 §9.4: the platform confirms the notification, or the device keeps sending it.
            self._send(peer, "MESSAGE", device_id, manscdp.response_ok("Alarm", doc.sn, device_id))
        else:  # Keepalive, DeviceInfo, DeviceStatus, …: the device is alive
            await self._tracker.heard_from(unit)

    async def _catalog(self, unit: Unit, doc: manscdp.Document) -> None:
        now_ms = int(self._clock() * 1000)

        def text(item: dict[str, str], name: str) -> str:
            return item.get(name, "")[:200]

        channels = [
            GbChannel(
                unit.id,
                item["DeviceID"][:64],
                text(item, "Name"),
                text(item, "Manufacturer"),
                text(item, "Model"),
                text(item, "Status"),
                text(item, "ParentID"),
                now_ms,
            )
            for item in doc.items
            if item.get("DeviceID")
        ]
        await self._store.save_gb_channels(channels)
        log.info("gb28181: unit %s: catalog of %d channels", unit.id, len(channels))

    async def _position(self, unit: Unit, device_id: str, doc: manscdp.Document, *, sos: bool) -> None:
        try:
            message = manscdp.position_message(doc)
        except manscdp.ManscdpError as exc:
            log.warning("gb28181: device %s (unit %s): position refused: %s", device_id, unit.id, exc)
            return
        message["sos"] = sos
        ack = await self._tracker.ingest(unit, message)
        for rejection in ack.rejected:
            log.warning("gb28181: device %s (unit %s): position refused: %s", device_id, unit.id, rejection.message)

    # the platform's requests ------------------------------------------------------------------------
    def _ask_catalog(self, device_id: str, peer: Peer) -> None:
        self._send(peer, "MESSAGE", device_id, manscdp.catalog_query(self._next_sn(), device_id))

    def _subscribe_positions(self, device_id: str, peer: Peer) -> None:
        interval = self._settings.mobile_position_interval_seconds
        body = manscdp.mobile_position_query(self._next_sn(), device_id, interval)
        extra = [("Event", "presence"), ("Expires", str(SUBSCRIPTION_SECONDS))]
        self._send(peer, "SUBSCRIBE", device_id, body, extra)

    def _send(
        self, peer: Peer, method: str, device_id: str, body: bytes, extra: list[tuple[str, str]] | None = None
    ) -> None:
        host, port = peer.address
        local_host, local_port = peer.local
        platform, domain = self._settings.platform_id, self._settings.domain
        self._cseq += 1
        request = sip.SipMessage(method=method, uri=f"sip:{device_id}@{host}:{port}")
        request.headers = [
            ("via", f"SIP/2.0/{peer.transport} {local_host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(8)}"),
            ("from", f"<sip:{platform}@{domain}>;tag={sip.new_tag()}"),
            ("to", f"<sip:{device_id}@{domain}>"),
            ("call-id", f"{secrets.token_hex(12)}@{local_host}"),
            ("cseq", f"{self._cseq} {method}"),
            ("max-forwards", "70"),
            ("contact", f"<sip:{platform}@{local_host}:{local_port}>"),
            *(extra or []),
            ("content-type", MANSCDP_TYPE),
        ]
        request.body = body
        if not peer.closed:
            peer.send(request.serialise())

    # live video (GB/T 28181-2016 §9.2) ----------------------------------------------------------------
    async def invite(self, unit_id: UnitId, channel_id: str, offer: bytes, *, within_seconds: float) -> Dialog:
        """INVITE the unit's device to send ``channel_id``'s live video as ``offer`` says; ACK its 200.

        ``DeviceUnavailable`` when the unit is not registered here, refuses, or does not answer in time."""
        registration = self.registration(unit_id)
        if registration is None or registration.peer.closed:
            raise DeviceUnavailable(f"unit {unit_id} is not registered as a GB/T 28181 device on this server")
        peer, device_id = registration.peer, registration.device.device_id
        host, port = peer.address
        local_host, local_port = peer.local
        call_id = f"{secrets.token_hex(12)}@{local_host}"
        local_tag = sip.new_tag()
        self._cseq += 1
        cseq = self._cseq
        request = sip.SipMessage(method="INVITE", uri=f"sip:{channel_id}@{host}:{port}")
        request.headers = [
            ("via", f"SIP/2.0/{peer.transport} {local_host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(8)}"),
            ("from", f"<sip:{self._settings.platform_id}@{self._settings.domain}>;tag={local_tag}"),
            ("to", f"<sip:{channel_id}@{self._settings.domain}>"),
            ("call-id", call_id),
            ("cseq", f"{cseq} INVITE"),
            ("max-forwards", "70"),
            ("contact", f"<sip:{self._settings.platform_id}@{local_host}:{local_port}>"),
            ("subject", f"{channel_id}:{_y_of(offer)},{self._settings.platform_id}:0"),  # GB/T 28181 §9.2.2
            ("content-type", SDP_TYPE),
        ]
        request.body = offer
        key = (call_id, cseq)
        waiter: asyncio.Future[sip.SipMessage] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        data = request.serialise()
        try:
            async with asyncio.timeout(within_seconds):
                peer.send(data)
                for pause in INVITE_RETRANSMIT if peer.transport == "UDP" else ():
                    with contextlib.suppress(TimeoutError):
                        return await self._invited(await asyncio.wait_for(asyncio.shield(waiter), pause), request,
                                                   registration, channel_id, local_tag)  # fmt: skip
                    if key in self._heard or peer.closed:
                        break
                    peer.send(data)
                return await self._invited(await waiter, request, registration, channel_id, local_tag)
        except TimeoutError:
            log.warning("gb28181: device %s (unit %s) did not answer the INVITE in %.0f s", device_id, unit_id,
                        within_seconds)  # fmt: skip
            raise DeviceUnavailable(f"the device of unit {unit_id} did not answer the video request") from None
        finally:
            self._waiting.pop(key, None)
            self._heard.discard(key)

    async def _invited(
        self, answer: sip.SipMessage, request: sip.SipMessage, registration: Registration, channel_id: str,
        local_tag: str,
    ) -> Dialog:  # fmt: skip
        device_id, unit_id = registration.device.device_id, registration.unit.id
        if answer.status >= 300:
            log.warning("gb28181: device %s (unit %s) refused the INVITE: %s %s", device_id, unit_id, answer.status,
                        answer.reason)  # fmt: skip
            raise DeviceUnavailable(f"the device of unit {unit_id} refused the video request ({answer.status} "
                                    f"{answer.reason})")  # fmt: skip
        target = _contact_uri(answer.get("contact")) or request.uri
        dialog = Dialog(device_id, unit_id, channel_id, request.call_id, local_tag, sip.tag_of(answer.get("to") or "")
                        or "", target, request.cseq[0], registration.peer, answer.body)  # fmt: skip
        self._in_dialog(dialog, "ACK", dialog.cseq)  # RFC 3261 §13.2.2.4: the ACK of a 2xx is its own transaction
        self._dialogs[dialog.call_id] = dialog
        log.info("gb28181: device %s (unit %s) accepted the INVITE for channel %s", device_id, unit_id, channel_id)
        return dialog

    def bye(self, dialog: Dialog) -> None:
        """Hang up a live-video or broadcast call (its answer is not waited for: the media stops either way)."""
        self._answers.pop(dialog.call_id, None)
        if self._dialogs.pop(dialog.call_id, None) is None:
            return
        self._cseq += 1
        self._in_dialog(dialog, "BYE", max(self._cseq, dialog.cseq + 1))
        log.info("gb28181: BYE to device %s (unit %s)", dialog.device_id, dialog.unit_id)

    def request_keyframe(self, dialog: Dialog) -> None:
        """Ask the channel for a keyframe now (a viewer joined, a recording segment starts)."""
        registration = self.registration(dialog.unit_id)
        if registration is not None:
            body = manscdp.keyframe_request(self._next_sn(), dialog.channel_id)
            self._send(registration.peer, "MESSAGE", dialog.channel_id, body)

    def _in_dialog(self, dialog: Dialog, method: str, cseq: int) -> None:
        peer = dialog.peer
        local_host, local_port = peer.local
        request = sip.SipMessage(method=method, uri=dialog.target)
        request.headers = [
            ("via", f"SIP/2.0/{peer.transport} {local_host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(8)}"),
            ("from", f"<sip:{self._settings.platform_id}@{self._settings.domain}>;tag={dialog.local_tag}"),
            ("to", f"<sip:{dialog.channel_id}@{self._settings.domain}>;tag={dialog.remote_tag}"),
            ("call-id", dialog.call_id),
            ("cseq", f"{cseq} {method}"),
            ("max-forwards", "70"),
        ]
        if not peer.closed:
            peer.send(request.serialise())

    # broadcast (语音广播, GB/T 28181-2016 §9.12) ---------------------------------------------------------
    async def broadcast(self, unit_id: UnitId, *, within_seconds: float) -> tuple[sip.SipMessage, Registration, Peer]:
        """Notify the unit's device of a broadcast and wait for its INVITE for the audio (answer it with
        ``accept_broadcast`` over the returned peer, the one the INVITE came on; the registration keeps its
        own: an INVITE never moves where the device is signalled). ``DeviceUnavailable`` when not registered
        here or no INVITE comes in time."""
        registration = self.registration(unit_id)
        if registration is None or registration.peer.closed:
            raise DeviceUnavailable(f"unit {unit_id} is not registered as a GB/T 28181 device on this server")
        device_id = registration.device.device_id
        waiter = self._broadcasts.get(device_id)
        if waiter is None or waiter.done():
            waiter = self._broadcasts[device_id] = asyncio.get_running_loop().create_future()
        body = manscdp.broadcast_notify(self._next_sn(), self._settings.platform_id, device_id)
        self._send(registration.peer, "MESSAGE", device_id, body)
        try:
            async with asyncio.timeout(within_seconds):
                invite, peer = await asyncio.shield(waiter)
        except TimeoutError:
            log.warning("gb28181: device %s (unit %s) sent no INVITE for the broadcast in %.0f s", device_id, unit_id,
                        within_seconds)  # fmt: skip
            raise DeviceUnavailable(f"the device of unit {unit_id} did not ask for the broadcast audio") from None
        finally:
            if self._broadcasts.get(device_id) is waiter:
                del self._broadcasts[device_id]
        return invite, registration, peer

    def accept_broadcast(self, invite: sip.SipMessage, registration: Registration, peer: Peer, answer: bytes) -> Dialog:
        """Answer the device's broadcast INVITE 200 with ``answer`` (our SDP); the call is hung up with ``bye``."""
        local_tag = sip.new_tag()
        local_host, local_port = peer.local
        contact = f"<sip:{self._settings.platform_id}@{local_host}:{local_port}>"
        reply = sip.response(invite, 200, to_tag=local_tag, body=answer,
                             extra=[("Contact", contact), ("Content-Type", SDP_TYPE)])  # fmt: skip
        data = reply.serialise()
        self._answers[invite.call_id] = data
        self._reply(peer, reply)
        device_id = registration.device.device_id
        self._cseq += 1
        dialog = Dialog(device_id, registration.unit.id, device_id, invite.call_id, local_tag,
                        sip.tag_of(invite.get("from") or "") or "", _contact_uri(invite.get("contact")) or
                        f"sip:{device_id}@{peer.address[0]}:{peer.address[1]}", self._cseq, peer,
                        invite.body)  # fmt: skip
        self._dialogs[dialog.call_id] = dialog
        log.info("gb28181: device %s (unit %s) takes the broadcast audio", device_id, registration.unit.id)
        return dialog

    def refuse(self, invite: sip.SipMessage, peer: Peer, status: int) -> None:
        """Answer a device's broadcast INVITE with an error (its SDP cannot be served)."""
        self._reply(peer, sip.response(invite, status))

    def _device_invite(self, msg: sip.SipMessage, peer: Peer) -> None:
        """A device's INVITE: for the broadcast we notified it of (GB/T 28181 §9.12), else refused."""
        device_id = msg.from_user or ""
        registration = self._registrations.get(device_id)
        if registration is None or registration.peer.address[0] != peer.address[0]:
            log.warning("gb28181: INVITE from %s at %s refused: not registered from there", device_id, peer.address[0])
            self._reply(peer, sip.response(msg, 403))
            return
        if (answered := self._answers.get(msg.call_id)) is not None:  # a retransmission: our 200 was lost
            if not peer.closed:
                peer.send(answered)
            return
        waiter = self._broadcasts.get(device_id)
        if waiter is None or waiter.done():
            log.warning("gb28181: device %s (unit %s) sent an INVITE nobody asked for", device_id,
                        registration.unit.id)  # fmt: skip
            self._reply(peer, sip.response(msg, 488))
            return
        self._reply(peer, sip.response(msg, 100))
        waiter.set_result((msg, peer))

    def _device_bye(self, msg: sip.SipMessage, peer: Peer) -> None:
        self._answers.pop(msg.call_id, None)
        dialog = self._dialogs.pop(msg.call_id, None)
        if dialog is None:
            self._reply(peer, sip.response(msg, 481))
            return
        self._reply(peer, sip.response(msg, 200))
        log.info("gb28181: device %s (unit %s) ended its video (BYE)", dialog.device_id, dialog.unit_id)
        if dialog.on_bye is not None:
            dialog.on_bye()

    def _next_sn(self) -> int:
        self._sn += 1
        return self._sn


def _transaction(msg: sip.SipMessage) -> tuple[str, str, str]:
    """What makes a request a retransmission of another: the same sender, Call-ID and CSeq (RFC 3261 §17.2.3
    would match the Via branch; GB devices of the 2016 edition do not all send an RFC 3261 branch)."""
    return msg.from_user or "", msg.call_id, msg.get("cseq") or ""


def _expires(msg: sip.SipMessage) -> int:
    """The registration lifetime asked for: the Contact's expires parameter, else Expires, else 3600."""
    contact = msg.get("contact") or ""
    for part in contact.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "expires" and value.strip().isdigit():
            return int(value.strip()[:9])
    header = (msg.get("expires") or "").strip()
    return int(header[:9]) if header.isdigit() else 3600


def _contact_uri(value: str | None) -> str | None:
    """The URI of a Contact header (``<sip:…>`` or bare)."""
    if not value:
        return None
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";")[0].strip() or None


def _y_of(offer: bytes) -> str:
    for line in offer.decode("ascii", errors="replace").splitlines():
        if line.startswith("y="):
            return line[2:].strip()
    return "0"


def _gb_date() -> str:
    """The Date header GB/T 28181 devices set their clocks from (local time, milliseconds, no zone)."""
    return datetime.now(manscdp.CHINA).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


__all__ = ["DeviceUnavailable", "Dialog", "GbService", "Peer", "Registration"]
