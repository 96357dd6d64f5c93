"""The load generator's bare WebSocket client (bench/raw_websocket.py) against aiohttp's server: the handshake
and its token, masked frames the server reads, frames split across reads and large ones, pings answered, the
closing handshake both ways, and a refused handshake failing ``opened`` (the benchmark counts it a failure)."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from bench.raw_websocket import RawWebSocket, connect, frame_bounds, masked_frame


class Recorder(RawWebSocket):
    def __init__(self, port: int, token: str) -> None:
        super().__init__("/ws", f"127.0.0.1:{port}", token, random.Random(1))
        self.texts: list[bytes] = []
        self.ended = 0
        self.got = asyncio.Event()

    def on_text(self, payload: bytes) -> None:
        self.texts.append(payload)
        self.got.set()

    def on_end(self) -> None:
        self.ended += 1


async def serve() -> tuple[TestServer, list[str]]:
    """A server that checks the token, answers each text with its upper case (and a 300 kB message for
    ``big``), pings for ``ping``, closes for ``bye``; it records what it saw."""
    seen: list[str] = []

    async def socket(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer good":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.PONG:
                seen.append(f"pong:{message.data.decode()}")
                await ws.send_str("after pong")
            elif message.type is WSMsgType.TEXT:
                seen.append(message.data)
                if message.data == "ping":
                    await ws.ping(b"p1")
                elif message.data == "bye":
                    await ws.close(code=4000)
                elif message.data == "big":
                    await ws.send_str("x" * 300_000)
                else:
                    await ws.send_str(message.data.upper())
        seen.append(f"closed:{ws.close_code}")
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    server = TestServer(app, port=0)
    await server.start_server()
    return server, seen


async def next_text(client: Recorder) -> bytes:
    await asyncio.wait_for(client.got.wait(), 5)
    client.got.clear()
    return client.texts.pop(0)


async def test_masked_frames_reach_the_server_and_answers_come_back_whole() -> None:
    server, seen = await serve()
    try:
        client = Recorder(server.port or 0, "good")
        await connect(client, "127.0.0.1", server.port or 0)
        for text in ("a", "ü" * 100, "b" * 70_000):  # 7-bit, 16-bit and 64-bit lengths
            client.send_text(text.encode())
            assert await next_text(client) == text.upper().encode()
        client.send_text(b"big")
        assert await next_text(client) == b"x" * 300_000  # many reads, parsed once whole
        client.send_text(b"ping")
        assert await next_text(client) == b"after pong"
        assert "pong:p1" in seen
        client.close()
        await asyncio.wait_for(client.done, 5)
        assert client.ended == 0
        await asyncio.sleep(0.1)
        assert seen[-1] == "closed:1000"
    finally:
        await server.close()


async def test_the_server_closing_ends_the_socket_once() -> None:
    server, seen = await serve()
    try:
        client = Recorder(server.port or 0, "good")
        await connect(client, "127.0.0.1", server.port or 0)
        client.send_text(b"bye")
        await asyncio.wait_for(client.done, 5)
        assert client.ended == 1 and client.closing
        assert seen == ["bye", "closed:4000"]  # our echo of its close frame ended its handler cleanly
    finally:
        await server.close()


async def test_a_refused_handshake_fails_opened() -> None:
    server, _ = await serve()
    try:
        client = Recorder(server.port or 0, "bad")
        with pytest.raises(ConnectionError, match="401"):
            await connect(client, "127.0.0.1", server.port or 0)
    finally:
        await server.close()


def test_frames_split_anywhere_are_found_whole() -> None:
    frame = bytes((0x81, 126)) + (300).to_bytes(2, "big") + b"y" * 300
    for cut in range(len(frame)):
        bounds = frame_bounds(frame[:cut], 0)
        assert bounds is None or bounds[2] > cut
    assert frame_bounds(frame, 0) == (0x81, 4, 304)
    with pytest.raises(ConnectionError):
        frame_bounds(bytes((0x81, 0x85)) + b"mask" + b"hello", 0)


def test_masking_is_an_involution_with_the_key_in_the_frame() -> None:
    payload = bytes(range(256)) * 3
    frame = masked_frame(0x1, payload, 0xA1B2C3D4)
    assert frame[:4] == bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    key, body = frame[4:8], frame[8:]
    assert key == bytes.fromhex("A1B2C3D4")
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload
