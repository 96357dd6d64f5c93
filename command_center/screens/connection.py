"""One screen's socket: a bounded queue of pre-serialised messages and a single writer task.

Feeds never wait on a screen: ``send`` only enqueues. A screen whose queue fills is told ``too_slow``
with the sequence numbers it did receive, and is disconnected; it reconnects and resumes from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008  # application close code: the screen fell behind
BYE_GRACE_SECONDS = 2.0  # how long a dropped screen's socket may take to carry the bye before it is cut


class ScreenConnection:
    def __init__(self, ws: web.WebSocketResponse, *, max_queue: int, label: str, abort: Callable[[], None]) -> None:
        self._ws = ws
        self._abort = abort  # cuts the TCP connection when even the bye cannot get through
        self._queue: asyncio.Queue[tuple[str | None, int, bytes]] = asyncio.Queue(maxsize=max_queue)
        self.label = label
        #: topic → newest seq written to the socket; the resume point told to a screen that is dropped.
        self.delivered: dict[str, int] = {}
        self.too_slow = False
        self.finished = False  # set by the hub once the socket's handler has cleaned up
        self.sent_messages = 0
        self.dropped = 0  # messages thrown away when the queue overflowed (the screen is then disconnected)

    def send(self, data: bytes, *, topic: str | None = None, seq: int = 0) -> None:
        """Queue a message; never blocks. Overflow marks the screen too slow and ends it."""
        if self.too_slow or self._ws.closed:
            return
        try:
            self._queue.put_nowait((topic, seq, data))
        except asyncio.QueueFull:
            self.too_slow = True
            self.dropped = self._queue.qsize() + 1
            log.warning("screen %s: queue full (%d); disconnecting", self.label, self._queue.maxsize)
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()
            bye = {
                "type": "bye",
                "code": "too_slow",
                "message": "this screen fell behind; reconnect and resume from the sequence numbers given",
                "resume": self.delivered,
            }
            self._queue.put_nowait((None, 0, orjson.dumps(bye)))
            asyncio.get_running_loop().call_later(BYE_GRACE_SECONDS, self._cut_if_open)

    def _cut_if_open(self) -> None:
        if not self.finished:
            log.warning(
                "screen %s: did not take its bye in %.0f s; cutting the connection", self.label, BYE_GRACE_SECONDS
            )
            self._abort()

    def send_json(self, message: object) -> None:
        self.send(orjson.dumps(message))

    async def write_forever(self) -> None:
        """The only writer of this socket; ends quietly when the peer is gone."""
        try:
            await self._write()
        except ConnectionError as exc:
            log.info("screen %s: connection lost while writing (%s)", self.label, exc)

    async def _write(self) -> None:
        while True:
            topic, seq, data = await self._queue.get()
            try:
                await self._ws.send_frame(data, WSMsgType.TEXT)
            finally:
                self._queue.task_done()
            self.sent_messages += 1
            if topic is not None:
                self.delivered[topic] = seq
            if self.too_slow and self._queue.empty():
                await self._ws.close(code=CLOSE_TOO_SLOW, message=b"too slow")
                return

    async def drained(self) -> None:
        """Return once every queued message was written (callers bound the wait)."""
        await self._queue.join()
