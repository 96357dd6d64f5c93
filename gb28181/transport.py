"""The SIP sockets: one UDP endpoint and one TCP server on the same port, feeding ``GbService``.

UDP datagrams go through a bounded queue to a pool of workers (a full queue drops the datagram: the device
retransmits, as UDP SIP expects); each TCP connection is read by its own task, which frames messages by
Content-Length and handles them in order, and is closed after ``idle_seconds`` without a byte (a device
silent that long is offline anyway; an idle socket must not hold a slot). Every task is owned here and
cancelled on ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable

from gb28181.service import GbService
from gb28181.sip import SipParseError, StreamFramer

log = logging.getLogger(__name__)

UDP_QUEUE = 1_024
#: Datagrams handled at once. A MobilePosition is answered once stored, and the position writer commits in
#: batches (tens of milliseconds): with 4 workers the registrar took about 72 positions a second however many
#: devices sent them (bench.gb28181); each idle worker is one parked task.
UDP_WORKERS = 256
TCP_READ = 65_536
MAX_TCP_CONNECTIONS = 10_000
#: The SIP socket's kernel receive buffer. The default (208 KiB of kernel accounting: about 100 datagrams, 50 ms
#: of 2,000 devices' MESSAGEs) overflowed at every stall of the event loop and the kernel dropped a third of the
#: positions (``UdpRcvbufErrors``; bench.gb28181). 1 MiB (Linux doubles it for its bookkeeping) holds about half
#: a second, the devices' retransmission timer (RFC 3261 T1): a longer backlog would only be answered after the
#: devices had sent it again. Capped by the kernel's ``net.core.rmem_max``: a smaller grant is logged.
UDP_RECEIVE_BUFFER = 1024 * 1024


class UdpPeer:
    transport = "UDP"

    def __init__(self, endpoint: asyncio.DatagramTransport, address: tuple[str, int], local: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self.address = address
        self.local = local

    def send(self, data: bytes) -> None:
        self._endpoint.sendto(data, self.address)

    @property
    def closed(self) -> bool:
        return self._endpoint.is_closing()


class TcpPeer:
    transport = "TCP"

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.address: tuple[str, int] = writer.get_extra_info("peername")[:2]
        self.local: tuple[str, int] = writer.get_extra_info("sockname")[:2]

    def send(self, data: bytes) -> None:
        self._writer.write(data)  # small signalling messages; the kernel buffer takes them

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, tuple[str, int]]], answered: Callable[[bytes], bool]) -> None:
        self._queue = queue
        self._answered = answered
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Answers to the platform's own requests (an INVITE's 200) are few and awaited: taken at once, never
        # dropped behind a queue full of device requests (which devices retransmit).
        if data[:8] == b"SIP/2.0 " and self._answered(data):
            return
        try:
            self._queue.put_nowait((data, addr[:2]))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("gb28181: UDP queue full; %d datagrams dropped so far", self.dropped)


class SipServer:
    """Binds UDP and TCP on ``host:port`` (port 0: an ephemeral port free for both)."""

    def __init__(self, service: GbService, host: str, port: int, *, idle_seconds: float) -> None:
        self._service = service
        self._idle = idle_seconds
        self._host = host
        self._wanted_port = port
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue(UDP_QUEUE)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            endpoint, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._queue, self._service.answered),
                local_addr=(self._host, self._wanted_port),
                family=socket.AF_INET,
            )
            port = endpoint.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._connection, self._host, port, family=socket.AF_INET)
            except OSError:
                endpoint.close()
                if self._wanted_port:
                    raise
                continue  # the ephemeral UDP port is taken on TCP: try another
            self._udp, self.port = endpoint, port
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        widen_receive_buffer(self._udp, UDP_RECEIVE_BUFFER, "SIP")
        local = self._udp.get_extra_info("sockname")[:2]
        for index in range(UDP_WORKERS):
            self._own(asyncio.create_task(self._udp_worker(local), name=f"gb28181-udp-{index}"))
        log.info("gb28181: SIP on %s:%s (UDP and TCP)", self._host, self.port)

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _udp_worker(self, local: tuple[str, int]) -> None:
        assert self._udp is not None
        endpoint = self._udp
        while True:
            data, address = await self._queue.get()
            here = (_route_to(address[0]), local[1]) if local[0] == "0.0.0.0" else local
            try:
                await self._service.handle(data, UdpPeer(endpoint, address, here))
            except Exception:  # a bug on one datagram must not stop the worker that serves every device
                log.exception("gb28181: datagram from %s:%s broke its handler", *address)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) > MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tasks.add(task)
        peer = TcpPeer(writer)
        framer = StreamFramer(self._service.max_message_bytes)
        try:
            while True:
                async with asyncio.timeout(self._idle):
                    data = await reader.read(TCP_READ)
                if not data:
                    break
                for message in framer.feed(data):
                    await self._service.handle(message, peer)
        except SipParseError as exc:
            log.warning("gb28181: TCP %s:%s closed: %s", *peer.address, exc.reason)
        except TimeoutError:
            log.info("gb28181: TCP %s:%s closed: silent for %.0f s", *peer.address, self._idle)
        except Exception:  # a handler bug ends this device's connection only
            log.exception("gb28181: TCP %s:%s: a message broke its handler; connection closed", *peer.address)
        except ConnectionError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def widen_receive_buffer(endpoint: asyncio.DatagramTransport, wanted: int, what: str) -> int:
    """Ask the kernel for a ``wanted``-byte receive buffer on a UDP socket: datagrams arriving while the event
    loop is busy wait there instead of being dropped. The bytes granted (Linux reports twice what it keeps
    for payload); a grant below ``wanted`` is logged once per socket with the setting that limits it."""
    sock = endpoint.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
        granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError as exc:
        log.warning("gb28181: %s socket: receive buffer of %d bytes refused: %s", what, wanted, exc)
        return 0
    if granted < wanted:
        log.warning("gb28181: %s socket: receive buffer of %d bytes asked, %d granted (raise net.core.rmem_max)",
                    what, wanted, granted)  # fmt: skip
    return granted


@functools.lru_cache(maxsize=1024)
def _route_to(host: str) -> str:
    """Our address on the route to ``host`` (a socket bound to 0.0.0.0 does not know it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        return "127.0.0.1"
