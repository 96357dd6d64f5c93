"""A unit's telemetry socket: each message taken in one synchronous step and answered from its commit.

The ack must wait until the positions are durable, and at 10,000 units a second's worth of messages wait
for their commit at any moment. Awaiting the commit in the socket's task resumed a chain of coroutines
twice a message (received, then committed), with a future, a done callback and a scheduled call each:
that machinery was the largest share of the server's own work per message. Here the socket's task takes
the message (``Tracker.take``: validation and the live view, no await), hands it to the writer and goes
back to reading; the writer tells the socket itself once the batch is committed (the socket is the
message's ``CommitWaiter``), and the ack is written there and then. A message that needs the store or the
alarm desk first (a status change, an alarm) waits for them in the task, as before.

A unit sends its next message only once its ack arrived (docs/protocols.md), so nearly always nothing is
in flight when the next one comes. One that sends ahead anyway has each message wait for the previous
answer: its answers keep their order and it has one message in flight, as before. A unit that stops
reading while it goes on sending fills our side of its connection; past ``MAX_UNREAD`` bytes it is cut.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable
from collections.abc import Set as AbstractSet

from aiohttp import web

from field_units.messages import Refused, Report, decode, failure, is_task_update, report_task
from field_units.tracker import Taken, Tracker
from field_units.writer import Key
from persistence.models import Unit

log = logging.getLogger(__name__)

MAX_UNREAD = 1 << 20  # bytes written to a unit and not yet taken by its connection before the unit is cut


class UnitSocket:
    """What one unit's telemetry WebSocket does with each message it sends (``receive`` is the caller's).

    Also the ``CommitWaiter`` of its message in flight (``done``, ``set_result``, ``set_exception``)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        unit: Unit,
        tracker: Tracker,
        report: Report | None,
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._unit = unit
        self._tracker = tracker
        self._take = tracker.take  # bound once, not once per message
        self._store = tracker.store
        self._acknowledge = tracker.acknowledge
        self._report = report
        self._in_flight: Taken | None = None  # the message waiting for its commit
        self._answered: asyncio.Future[None] | None = None  # made only when a message arrives meanwhile

    def handle(self, message: str | bytes) -> Awaitable[None] | None:
        """Take one text or binary message; its answer is written now or once it is committed.

        Nearly every message is taken here without waiting for anything (None is returned); otherwise the
        returned awaitable finishes taking it (await it before the next message)."""
        if self._in_flight is not None:
            return self._after_previous(message)
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() > MAX_UNREAD:
            self._cut(transport)
            return None
        try:
            data = decode(message)
        except Refused as refused:
            self.send(refused.reply)
            return None
        if type(data) is dict and is_task_update(data):  # a position (nearly always) is not a dict
            return self._report_task(data)
        try:
            taken = self._take(self._unit, data)
            if not taken.settled:
                return self._settle_and_store(taken)
            self._in_flight = taken
            self._store(taken, self)
        except Exception as exc:
            self._in_flight = None
            self.send(failure(self._unit, exc))
        return None

    async def _after_previous(self, message: str | bytes) -> None:
        """The unit sent ahead of its ack: this message waits until the previous one is answered."""
        while self._in_flight is not None:
            if self._answered is None:
                self._answered = asyncio.get_running_loop().create_future()
            await self._answered
        waiting = self.handle(message)
        if waiting is not None:
            await waiting

    async def _report_task(self, data: dict[str, object]) -> None:
        self.send(await report_task(self._report, self._unit, data))

    async def _settle_and_store(self, taken: Taken) -> None:
        try:
            await self._tracker.settle(taken)
            self._in_flight = taken
            self._store(taken, self)
        except Exception as exc:
            self._in_flight = None
            self.send(failure(self._unit, exc))

    # the message's CommitWaiter ------------------------------------------------------------------------
    def done(self) -> bool:
        return self._in_flight is None

    def set_result(self, new: AbstractSet[Key], /) -> None:
        """The message is committed (``new``: the keys of its batch that were new): ack it now."""
        taken = self._in_flight
        if taken is None:
            return
        try:
            self.send(self._acknowledge(taken, new).encode())
        except Exception:  # the writer tells the rest of the batch after this: never raise into it
            log.exception("unit %s: acknowledging a message failed", self._unit.id)
        self._answer_given()

    def set_exception(self, exception: BaseException, /) -> None:
        """The message could not be committed (the server is stopping, or the store refused it)."""
        if self._in_flight is None:
            return
        self.send(failure(self._unit, exception))
        self._answer_given()

    def _answer_given(self) -> None:
        self._in_flight = None
        if self._answered is not None:  # the next message is waiting for this answer
            if not self._answered.done():
                self._answered.set_result(None)
            self._answered = None

    # writing --------------------------------------------------------------------------------------------
    def _cut(self, transport: asyncio.Transport) -> None:
        """The unit has left more than ``MAX_UNREAD`` bytes of what we sent it unread: cut the connection."""
        log.warning("unit %s: over %d bytes sent and not read; cutting the connection", self._unit.id, MAX_UNREAD)
        transport.abort()

    def send(self, reply: bytes) -> None:
        """Write a text message now, from the writer as well as from the task; a closed socket drops it (the
        unit resends whatever it was not told is stored).

        Written as one frame straight to the transport (``text_frame``): aiohttp's public send is two nested
        coroutines a frame, which a callback cannot await, and this is the one message written 10,000 times
        a second. Safe beside aiohttp's own writes on this socket (pongs, pushed tasks, the close): the socket
        runs without compression, and every write is whole frames within one turn of the loop. Nothing is
        written once the close has begun (``closed`` is set before aiohttp writes its close frame). Not
        waiting for the peer to read is what ``MAX_UNREAD`` bounds."""
        transport = self._transport
        if self._ws.closed or transport is None or transport.is_closing():
            return
        transport.write(text_frame(reply))


def text_frame(payload: bytes) -> bytes:
    """One WebSocket text frame from a server (RFC 6455 §5.2): FIN, opcode 1, no extension, unmasked."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return _HEAD_16.pack(0x81, 126, size) + payload
    return _HEAD_64.pack(0x81, 127, size) + payload


_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")
