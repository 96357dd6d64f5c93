"""Slow and idle connections against the real server process (``python -m command_center serve``): request
heads trickled in are cut after the head timeout, one address's connections past its cap are refused at once,
a body that does not arrive gets 408, and meanwhile health answers another address; a keep-alive connection
idle between requests is left alone. Loopback only, a few hundred sockets, every wait bounded."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.standalone_server import CLI, ROOT, run

HEAD_TIMEOUT = 2.0
PER_ADDRESS = 50
SOCKETS = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A server process with a 2 s head and body timeout and 50 connections per address."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env |= {"CC_DATA_DIR": str(tmp_path), "CC_STORE__URL": f"sqlite:///{tmp_path / 'app.db'}", "CC_CONFIG": "",
            "CC_SERVER__HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT), "CC_SERVER__BODY_TIMEOUT_SECONDS": "2",
            "CC_SERVER__MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS), "CC_AUTH__ARGON2_MEMORY_KIB": "8",
            "CC_AUTH__ARGON2_TIME_COST": "1", "CC_AUTH__ARGON2_PARALLELISM": "1"}  # fmt: skip
    run(*CLI, "init", env=env)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):  # up to 30 s for the first start (migrations)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _health_from(url: str, address: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(f"{url}/api/health") as response,
    ):
        return response.status


async def _slow_head(port: int, stop: asyncio.Event) -> bytes:
    """Open a connection, send a request head a line at a time, never finishing it; what the server says."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: slow\r\n")

        async def trickle() -> None:
            for n in range(100):
                await asyncio.sleep(0.5)
                writer.write(f"X-Slow-{n}: 1\r\n".encode())

        trickling = asyncio.create_task(trickle())
        try:
            read = asyncio.create_task(reader.read(200))
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            return read.result() if read in done else b"still open"
        finally:
            trickling.cancel()
    except ConnectionError:  # closed while it was still sending: the 408 may be lost to the reset
        return b"HTTP/1.1 408 Request Timeout (reset)"
    finally:
        writer.close()


async def test_slow_heads_are_cut_and_one_address_is_capped_while_health_answers(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    stop = asyncio.Event()
    sockets = [asyncio.create_task(_slow_head(port, stop)) for _ in range(SOCKETS)]
    await asyncio.sleep(0.5)  # they are all open or refused by now
    assert await _health_from(server, "127.0.0.2") == 200  # another address is served meanwhile
    try:
        async with asyncio.timeout(HEAD_TIMEOUT + 20):
            answers = await asyncio.gather(*sockets)
    finally:
        stop.set()
        answers = await asyncio.gather(*sockets)
    kinds = Counter(a.split(b"\r\n", 1)[0][:12].decode(errors="replace") for a in answers)
    assert kinds["HTTP/1.1 408"] == PER_ADDRESS, kinds  # admitted, then cut despite trickling
    assert kinds["HTTP/1.1 503"] == SOCKETS - PER_ADDRESS, kinds  # over the cap
    assert await _health_from(server, "127.0.0.1") == 200  # the address is served again once they are gone


async def test_a_body_that_does_not_arrive_gets_408(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"username\":")  # fmt: skip
        async with asyncio.timeout(20):
            answer = await reader.read(1000)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request_timeout" in answer
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_head_timeout(server: str) -> None:
    opened: list[object] = []

    async def count(_session: object, _context: object, params: object) -> None:
        opened.append(params)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(count)
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace]) as http:
        async with http.get(f"{server}/api/health") as first:
            assert first.status == 200
            await first.read()
        await asyncio.sleep(HEAD_TIMEOUT + 1)  # idle between requests, longer than the head timeout
        async with http.get(f"{server}/api/health") as second:
            assert second.status == 200
    assert len(opened) == 1  # the same connection served both (a cut one would have been replaced)


async def test_a_later_request_head_on_a_kept_alive_connection_is_on_the_deadline_too(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: slow\r\n\r\n")
        async with asyncio.timeout(10):
            first = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in first.split(b"\r\n") if line.lower().startswith(
                b"content-length")))  # fmt: skip
            await reader.readexactly(length)
        assert first.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: sl")  # the next request's head, never finished
        async with asyncio.timeout(HEAD_TIMEOUT + 20):
            second = await reader.read(200)
        assert second.startswith(b"HTTP/1.1 408"), second
    finally:
        writer.close()


async def test_a_quiet_websocket_is_not_cut_by_the_head_timeout(server: str, tmp_path: Path) -> None:
    password = (tmp_path / "first-admin-password").read_text().strip()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(f"{server}/api/auth/login", json={"username": "admin", "password": password}) as login:
            assert login.status == 200, await login.text()
            token = (await login.json())["token"]
        async with http.ws_connect(
            f"{server}/api/screen/ws", headers={"Authorization": f"Bearer {token}"}, autoping=False
        ) as socket_:
            await asyncio.sleep(HEAD_TIMEOUT + 1)  # quiet longer than the head timeout
            assert not socket_.closed
            await socket_.ping()
            async with asyncio.timeout(10):
                while (message := await socket_.receive()).type != aiohttp.WSMsgType.PONG:
                    assert message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message


def test_the_connection_book_caps_each_address_but_not_a_trusted_proxy() -> None:
    from command_center.connection_guard import ConnectionBook

    book = ConnectionBook(per_address=2, total=5, exempt=frozenset({"10.0.0.1"}))
    assert book.admit("192.0.2.1") is None and book.admit("192.0.2.1") is None
    refusal = book.admit("192.0.2.1")
    assert refusal is not None and refusal.startswith(b"HTTP/1.1 503") and b"Retry-After" in refusal
    assert book.admit("10.0.0.1") is None and book.admit("10.0.0.1") is None and book.admit("10.0.0.1") is None
    assert book.admit("192.0.2.2") is not None  # five open in all: the total cap
    book.release("192.0.2.1")
    assert book.admit("192.0.2.1") is None and book.refused == 2


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return head


async def test_a_body_sent_after_its_head_is_not_taken_for_a_late_head(server: str) -> None:
    """A body arriving after its head (a separate write) must not arm the head deadline: the connection then
    idles between requests, longer than the deadline, and serves the next request."""
    port = int(server.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = b'{"username": "nobody", "password": "wrong guess!"}'
        writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(body)
        async with asyncio.timeout(10):
            assert (await _response(reader)).startswith(b"HTTP/1.1 401")
        await asyncio.sleep(HEAD_TIMEOUT + 1)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            assert (await _response(reader)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
