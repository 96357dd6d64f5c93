"""A bare WebSocket client as an asyncio Protocol, for load generators that hold thousands of sockets.

aiohttp's client spends a reader, futures and a coroutine switch on every message: at 10,000 units a second
it cost the load generator more CPU than the bare server it drove, and its stalls counted as the server's
latency. This one does only what a load generator needs (RFC 6455): the HTTP/1.1 upgrade with a bearer
token, masked client frames, the server's unmasked frames parsed where they lie, pings answered, the closing
handshake. Subclasses get ``opened``, ``received`` and ``ended`` calls on the event loop, no task per socket.
No TLS, no extensions, no fragmented messages (the servers we drive never fragment; one is a protocol error).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
from typing import cast

#: The server proves it read our key by answering SHA-1(key + this GUID), base64-encoded (RFC 6455 1.3).
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
FIN = 0x80
CLOSE_NORMAL = struct.pack("!H", 1000)
CLOSE_WAIT_S = 5.0  # how long we wait for the server's close frame before dropping the connection


def masked_frame(opcode: int, payload: bytes, mask: int) -> bytes:
    """One final client frame. Client frames must be masked (RFC 6455 5.3): the payload XOR the 4-byte mask
    repeated, done as one XOR of two big integers rather than a Python loop over the bytes."""
    size = len(payload)
    if size < 126:
        header = bytes((FIN | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", FIN | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", FIN | opcode, 0x80 | 127, size)
    key = mask.to_bytes(4, "big")
    stream = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + key + masked


def frame_bounds(buffer: bytes, at: int) -> tuple[int, int, int] | None:
    """The server frame starting at ``at``: (its first byte: FIN and opcode, where its payload starts, where it
    ends), the end possibly beyond the buffer (not all in yet); None while even its header is incomplete.
    Server frames are never masked (RFC 6455 5.1): a masked one is refused."""
    have = len(buffer) - at
    if have < 2:
        return None
    first, second = buffer[at], buffer[at + 1]
    if second & 0x80:
        raise ConnectionError("the server sent a masked frame")
    size = second & 0x7F
    if size < 126:
        return first, at + 2, at + 2 + size
    extra = 2 if size == 126 else 8
    if have < 2 + extra:
        return None
    size = int.from_bytes(buffer[at + 2 : at + 2 + extra], "big")
    return first, at + 2 + extra, at + 2 + extra + size


class RawWebSocket(asyncio.Protocol):
    """One client socket on ``path`` with ``Authorization: Bearer <token>``.

    ``opened`` (a future) resolves on the server's 101 and fails if the connection or the handshake does;
    ``done`` resolves once the connection is gone after that. Subclasses override ``on_open`` (upgraded),
    ``on_text`` (a text message's payload, bytes) and ``on_end`` (the server closed or the connection broke
    before we said goodbye), and call ``send_text`` and ``close``."""

    def __init__(self, path: str, host: str, token: str, rng: random.Random) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {{key}}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        self._rng = rng
        self._key = base64.b64encode(rng.randbytes(16))
        self._upgraded = False
        self.closing = False  # we said goodbye (or the server did): nothing more is sent
        self._pending = bytearray()  # the start of a frame (or of the handshake's answer) not all in yet
        self._needed = 0  # bytes ``_pending`` must hold before it is worth parsing again
        self._transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.done: asyncio.Future[None] = self.loop.create_future()

    # for subclasses -------------------------------------------------------------------------------------
    def on_open(self) -> None:
        """The server said 101."""

    def on_text(self, payload: bytes) -> None:
        """A text message arrived."""

    def on_end(self) -> None:
        """The socket ended before we closed it: a close frame from the server, a reset, or a frame that is
        not ours to read (binary, fragmented); we close it if it is still open."""

    def send_text(self, payload: bytes) -> None:
        self._write(OP_TEXT, payload)

    def close(self) -> None:
        """Say goodbye with a close frame; the server answers with its own and the connection ends (or is
        dropped after ``CLOSE_WAIT_S``)."""
        if self.closing:
            return
        self.closing = True
        self._write(OP_CLOSE, CLOSE_NORMAL)
        self.loop.call_later(CLOSE_WAIT_S, self._drop)

    # asyncio.Protocol -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass
        self._transport.write(self._request.replace("{key}", self._key.decode()).encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._upgraded:
            self._fail(ConnectionError(f"the connection closed during the WebSocket handshake ({exc!r})"))
        elif not self.closing:
            self.closing = True
            self.on_end()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._pending:
            self._pending += data
            if len(self._pending) < self._needed:
                return  # a large frame still coming in: parse it once, when it is whole
            data, self._pending = bytes(self._pending), bytearray()
        at = 0
        try:
            if not self._upgraded:
                at = self._handshake(data)
            while at < len(data) and not self.done.done():
                bounds = frame_bounds(data, at)
                if bounds is None or bounds[2] > len(data):
                    self._needed = len(data) - at + 1 if bounds is None else bounds[2] - at
                    break
                first, start, at = bounds
                self._on_frame(first, data[start:at])
        except ConnectionError as exc:
            self._fail(exc)
            return
        if at < len(data):
            self._pending = bytearray(data[at:])

    # inside ---------------------------------------------------------------------------------------------
    def _handshake(self, data: bytes) -> int:
        """Check the server's 101 once its headers are in; returns where the frames start (len(data) while
        the headers are still coming in)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self._pending, self._needed = bytearray(data), len(data) + 1
            return len(data)
        status, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode()
        if status.split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept") != accept:
            raise ConnectionError(f"WebSocket handshake refused: {status}")
        self._upgraded = True
        self.opened.set_result(None)
        self.on_open()
        return end + 4

    def _on_frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == OP_TEXT and first & FIN:
            self.on_text(payload)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.closing:  # the server ends it: echo its code (RFC 6455 5.5.1); then the socket goes
                self.closing = True
                self.on_end()
                self._write(OP_CLOSE, payload[:2])
            assert self._transport is not None
            self._transport.close()
        elif opcode != OP_PONG and not self.closing:  # binary or fragmented: not what we read
            self.on_end()
            self.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(masked_frame(opcode, payload, self._rng.getrandbits(32)))

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        """Fail ``opened`` before the upgrade, ``done`` after; the connection goes."""
        failed = self.done if self._upgraded else self.opened
        if not failed.done():
            failed.set_exception(exc)
        self._drop()


async def connect(socket: RawWebSocket, host: str, port: int) -> None:
    """Open ``socket``'s connection and wait for the server's 101 (raises what made it fail)."""
    await asyncio.get_running_loop().create_connection(lambda: socket, host, port)
    await socket.opened
