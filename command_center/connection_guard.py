"""Slow and idle connections: the embedded server must not be emptied by half-sent requests.

aiohttp waits for a request head as long as the client likes (its keep-alive timer, 75 s, is the only bound)
and takes every connection the open-file limit allows: 4,000 sockets trickling headers held the server, and
at 20,000 it ran out of descriptors and refused everyone. ``GuardedConnection`` wraps each connection's
aiohttp ``RequestHandler`` (the very protocol aiohttp would use) and adds, before aiohttp sees a byte:

- a cap on open connections per client address and in all: one over either is answered 503 and closed at
  once, so one address cannot take the descriptors everyone else needs. Trusted proxies are exempt: every
  client arrives through them, so the proxy applies the cap per client itself (``limit_conn`` in nginx);
- a head deadline: a connection must deliver a complete request head within ``header_timeout_seconds`` of
  opening, or of the first byte of a later request on it; otherwise it gets 408 and is closed. Requests under
  way and upgraded sockets (WebSockets) are never cut by it.

The body deadline is the ``body_in_time`` middleware, which knows when a body is awaited. ``serve`` is
``web.run_app`` with this guard in the listening socket, and it raises the open-file limit to its maximum.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from aiohttp import StreamReader, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from command_center.access_log import AccessLogger
from config.settings import ServerSettings

log = logging.getLogger(__name__)

#: Descriptors kept back from connections: database pool, Redis, recordings, media (UDP) sockets, logs.
FD_RESERVE = 512


def _plain_response(status: str, code: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


_TOO_MANY = _plain_response("503 Service Unavailable", "unavailable", "too many connections from this address",
                            "Retry-After: 10\r\n")  # fmt: skip
_FULL = _plain_response("503 Service Unavailable", "unavailable", "the server is at its connection limit",
                        "Retry-After: 10\r\n")  # fmt: skip
_SLOW_HEAD = _plain_response("408 Request Timeout", "request_timeout", "request head not received in time")


@dataclass
class ConnectionBook:
    """Open connections per client address and in all (pure bookkeeping)."""

    per_address: int
    total: int
    exempt: frozenset[str] = frozenset()
    refused: int = 0
    cut: int = 0  # connections closed for a late request head
    _open: Counter[str] = field(default_factory=Counter)
    _total: int = 0
    _reported: tuple[float, int, int] = (0.0, 0, 0)  # when, refused, cut

    def report(self, now: float) -> None:
        """Log what was refused and cut, at most every 10 s (an attack must not flood the log as well)."""
        at, refused, cut = self._reported
        if now - at >= 10 and (self.refused, self.cut) != (refused, cut):
            log.warning("connections: %d refused (caps: %d per address, %d in all) and %d cut for a late request "
                        "head in the last %.0f s; %d open", self.refused - refused, self.per_address, self.total,
                        self.cut - cut, now - at if at else 0, self._total)  # fmt: skip
            self._reported = (now, self.refused, self.cut)

    def admit(self, address: str) -> bytes | None:
        """Count a new connection, or the answer that refuses it (nothing counted)."""
        if self._total >= self.total:
            self.refused += 1
            return _FULL
        if address not in self.exempt and self._open[address] >= self.per_address:
            self.refused += 1
            return _TOO_MANY
        self._total += 1
        self._open[address] += 1
        return None

    def release(self, address: str) -> None:
        self._total -= 1
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_from(self, address: str) -> int:
        return self._open[address]


class GuardedConnection(asyncio.Protocol):
    """One connection: admitted by the book, its heads on a deadline, everything else aiohttp's handler's."""

    def __init__(self, handler: RequestHandler, book: ConnectionBook, header_timeout: float) -> None:
        self._handler = handler
        self._book = book
        self._header_timeout = header_timeout
        self._address: str | None = None  # set once admitted
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heads_at_arming = 0
        self._payload: StreamReader | None = None  # the body of the newest request, while it arrives
        self._upgraded = False  # the connection switched protocols (a WebSocket): no request head comes again

    # The handler's progress, read from five of its attributes (aiohttp 3.x): how many request heads it has
    # parsed and the newest (with its body stream), whether a request handler is running, whether it sits
    # waiting for the next head, and whether the connection was upgraded.
    # tests/test_slow_clients.py pins the behaviour.
    def _heads(self) -> int:
        count: int = self._handler._request_count
        return count

    def _handling(self) -> bool:
        return self._handler._current_request is not None

    def _waiting_for_head(self) -> bool:
        waiter = self._handler._waiter
        return waiter is not None and not waiter.done()

    def _arm(self) -> None:
        self._heads_at_arming = self._heads()
        self._timer = asyncio.get_running_loop().call_later(self._header_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_overdue(self) -> None:
        self._timer = None
        if self._heads() != self._heads_at_arming or self._transport is None:
            return  # the head came in time
        if not self._waiting_for_head():  # still finishing the previous response: look again later
            self._timer = asyncio.get_running_loop().call_later(self._header_timeout, self._head_overdue)
        else:
            log.debug("closing a connection from %s: no complete request head within %g s", self._address,
                      self._header_timeout)  # fmt: skip
            self._book.cut += 1
            self._book.report(asyncio.get_running_loop().time())
            self._transport.write(_SLOW_HEAD)  # first: closing flushes it, a write after close is dropped
            self._handler.force_close()
            self._transport.close()

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # a stream transport (uvloop's is not an asyncio subclass)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else "unknown"
        refusal = self._book.admit(address)
        if refusal is not None:
            log.debug("refused a connection from %s (%d open from it)", address, self._book.open_from(address))
            self._book.report(asyncio.get_running_loop().time())
            transport.write(refusal)
            transport.close()
            return
        self._address, self._transport = address, transport
        self._handler.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:  # WebSocket frames, one call per message: straight to aiohttp, nothing to watch
            self._handler.data_received(data)
            return
        if self._address is None:
            return  # refused: whatever it sends is dropped with the connection
        heads = self._heads()
        body = self._payload is not None and not self._payload.is_eof()  # these bytes belong to a request's body
        self._handler.data_received(data)
        if self._heads() != heads:
            self._disarm()  # a head is complete: its request is the handler's now
            parsed = self._handler._messages
            self._payload = parsed[-1][1] if parsed else None
        elif self._timer is None and not body and not self._handling():
            self._arm()  # the first bytes of the next request's head
        self._upgraded = bool(self._handler._upgraded) and self._timer is None
        if self._upgraded and self._transport is not None:
            # From here each call is a WebSocket message for aiohttp's handler, nothing for the guard: hand
            # them to the handler directly (a Python call less per telemetry message). The transport reads a
            # protocol's ``data_received`` when the protocol is set (uvloop), so it is set again.
            self.data_received = self._handler.data_received  # type: ignore[method-assign]
            self._transport.set_protocol(self)

    def eof_received(self) -> bool | None:
        if self._address is not None:
            self._handler.eof_received()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._book.release(self._address)
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._address is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._handler.resume_writing()


def open_file_limit() -> int:
    """Raise this process's open-file limit to its hard maximum and return it (Windows has none: a guess)."""
    try:
        import resource
    except ImportError:
        return 16_384
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
        return soft


def connection_book(server: ServerSettings, files: int) -> ConnectionBook:
    total = server.max_connections or max(64, files - FD_RESERVE)
    if total > files - 64:
        log.warning("server.max_connections %d is near the open-file limit %d: the server may run out of "
                    "descriptors (raise the limit: ulimit -n, LimitNOFILE=)", total, files)  # fmt: skip
    return ConnectionBook(per_address=server.max_connections_per_address, total=total,
                          exempt=frozenset(server.trusted_proxies))  # fmt: skip


async def _serve(app: web.Application, server: ServerSettings, access_log_class: type[AbstractAccessLogger]) -> None:
    files = open_file_limit()
    book = connection_book(server, files)
    log.info("open-file limit %d: at most %d connections, %d per address (trusted proxies exempt); request heads "
             "within %g s, bodies within %g s", files, book.total, book.per_address, server.header_timeout_seconds,
             server.body_timeout_seconds)  # fmt: skip
    runner = web.AppRunner(app, handle_signals=True, access_log_class=access_log_class)
    try:
        await runner.setup()  # a component failing here: the cleanup below stops what had started
        handlers = runner.server
        assert handlers is not None
        timeout = server.header_timeout_seconds
        listener = await asyncio.get_running_loop().create_server(
            lambda: GuardedConnection(handlers(), book, timeout), server.host, server.port, backlog=1024,
            reuse_address=True,
        )  # fmt: skip
        try:
            await asyncio.Future()  # until a signal stops the loop (GracefulExit)
        finally:
            listener.close()
    finally:
        await runner.cleanup()


def serve(
    app: web.Application,
    server: ServerSettings,
    loop: asyncio.AbstractEventLoop,
    *,
    access_log_class: type[AbstractAccessLogger] = AccessLogger,
) -> None:
    """``web.run_app`` with every connection guarded: runs until SIGINT or SIGTERM, then shuts down cleanly."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, server, access_log_class))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError, web.GracefulExit, KeyboardInterrupt):
            loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
