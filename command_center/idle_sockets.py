"""Unit sockets that fall silent are pinged, and cut when they stay silent: one sweep for all of them.

A unit whose link died without a FIN (a 4G cell lost) leaves its socket open on the server; something
must notice. aiohttp's own ``heartbeat`` does, but re-arms it on every message received (a scheduled
callback and a timer calculation per position: a few per cent of the server's CPU at 10,000 units a
second). Units speak every second or so, so instead each message only records when the socket was last
heard (one dict store), and a sweep every quarter of ``idle`` pings the sockets silent for ``idle``
seconds and cuts those still silent half an ``idle`` after the ping, as aiohttp's heartbeat would (a pong
counts as heard: the unit socket runs with ``autoping=False`` and hands pongs to ``heard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from aiohttp import web

log = logging.getLogger(__name__)


class IdleSockets:
    def __init__(self, idle_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        # Keyed by ``id(ws)``: aiohttp's responses hash in Python (``hash(id(self))``), a frame more for every
        # message; the socket itself is kept in ``_sockets`` while it is watched, so its id is not reused.
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._heard: dict[int, float] = {}
        self._pinged: dict[int, float] = {}  # sockets pinged, and when
        self._abort: dict[int, Callable[[], None]] = {}
        self.cut = 0  # sockets cut for silence, for tests and health

    def __len__(self) -> int:
        return len(self._heard)

    def heard(self, ws: web.WebSocketResponse) -> None:
        """The socket received something (a message or a pong): called for every message, kept to a store."""
        self._heard[id(ws)] = self._clock()

    @contextlib.contextmanager
    def watching(self, ws: web.WebSocketResponse, abort: Callable[[], None]) -> Iterator[None]:
        """Watch ``ws`` while the block runs; ``abort`` cuts its connection (the transport's ``abort``)."""
        key = id(ws)
        self._sockets[key] = ws
        self._heard[key] = self._clock()
        self._abort[key] = abort
        try:
            yield
        finally:
            del self._heard[key], self._abort[key], self._sockets[key]
            self._pinged.pop(key, None)

    async def sweep(self) -> None:
        """Ping the sockets silent for ``idle_seconds``; cut those pinged half of it ago and silent since."""
        now = self._clock()
        for key, ws in list(self._sockets.items()):  # the sockets held: no id is reused during the sweep
            if self._sockets.get(key) is not ws:
                continue  # its handler ended while an earlier ping of this sweep was sent
            heard = self._heard[key]
            pinged = self._pinged.get(key)
            if pinged is not None and heard >= pinged:
                del self._pinged[key]  # it answered (or spoke): silent no more
                pinged = None
            if now - heard < self.idle_seconds:
                continue
            if pinged is None:
                self._pinged[key] = now
                with contextlib.suppress(ConnectionError, RuntimeError):  # closing already: its handler ends
                    await ws.ping()
            elif now - pinged >= self.idle_seconds / 2 and self._sockets.get(key) is ws:
                log.info("a unit socket was silent for %.0f s and did not answer a ping: cut", now - heard)
                self.cut += 1
                self._abort[key]()

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.idle_seconds / 4)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive one bad socket
                log.exception("idle unit sockets: the sweep failed")
