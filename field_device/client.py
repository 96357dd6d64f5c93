"""The device side of telemetry (docs/protocols.md): live over the WebSocket, backlog over HTTP.

Every recorded position goes to the outbox first and leaves it only when the server acknowledges it, so
a dropped 4G link loses nothing. One connection at a time:

1. after an outage (or at start), everything waiting is uploaded with ``POST /api/telemetry/batch``,
   oldest first, in chunks of at most 5,000 positions and ``max_body_bytes``;
2. then the unit socket: one message in flight, each answered by one ack before the next is sent. A
   message holds one position when the unit keeps up, and everything waiting (up to 500) when it is
   catching up, so a slow ack never builds an unbounded queue and costs one message per round trip;
3. when the link fails, reconnect after an exponential backoff with jitter (reset once a connection
   has been acknowledged), so thousands of units that lost one cell do not come back in one instant.

The unit's id comes from its credential: nothing here sends ``unit_id``. A position sent but not acked
before a drop stays in the outbox and is sent again: the server answers it ``duplicate``, and it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from field_device.outbox import Outbox, OutboxFull

log = logging.getLogger(__name__)

LIVE_BATCH = 500  # the socket's per-message limit
UPLOAD_BATCH = 5_000  # the batch endpoint's limit
MAX_BODY_BYTES = 1_048_576  # the server's default request limit (server.max_body_bytes)


class LinkRefused(Exception):
    """The server answered, but not with an ack (401, 503, an ``error`` message): try again later."""


class TelemetryClient:
    def __init__(
        self,
        base_url: str,
        device_secret: str,
        *,
        outbox: Outbox | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        ack_timeout: float = 30.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        seed: int | None = None,
        label: str = "unit",
        on_task: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {device_secret}"}
        self.outbox = outbox if outbox is not None else Outbox()
        self._session = session
        self._own_session = session is None
        self._backoff = backoff
        self._ack_timeout = ack_timeout
        self._max_body = max_body_bytes
        self._rng = random.Random(seed)
        self.label = label
        self._wake = asyncio.Event()  # a position was recorded
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._link: asyncio.Task[None] | None = None
        self._offline_until = 0.0
        self._closed = False
        self._acked_here = False  # this connection has had an answer: the backoff starts again
        self.connected = False  # the unit socket is open
        self.last_error = ""
        # counters (positions unless named otherwise)
        self.recorded = 0
        self.sent = 0  # including resends after a drop
        self.uploaded = 0  # of which over the batch endpoint
        self.messages = 0  # socket messages sent
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.reconnects = 0  # times the link was lost or refused and tried again
        self.drops = 0  # simulated outages
        # tasks from the command centre, by id (a task delivered again after a reconnect is not new)
        self.tasks: dict[str, dict[str, Any]] = {}
        self.task_deliveries = 0  # task messages received, repeats included
        self._on_task = on_task

    # the device's side ---------------------------------------------------------------------------------
    def record(self, position: dict[str, Any]) -> int | None:
        """Keep a new position (without ``seq``: the outbox numbers it); None, counted, when it is full.

        Raises ValueError for a position naming its unit: the server knows the unit by its credential.
        """
        if "unit_id" in position:
            raise ValueError("unit_id is never sent: the server knows the unit by its device credential")
        try:
            seq = self.outbox.add(position)
        except OutboxFull:
            if self.outbox.refused == 1 or self.outbox.refused % 1000 == 0:
                log.warning("%s: outbox full (%d waiting); %d new positions refused",
                            self.label, len(self.outbox), self.outbox.refused)  # fmt: skip
            return None
        self.recorded += 1
        self._empty.clear()
        self._wake.set()
        return seq

    def drop_link(self, seconds: float) -> None:
        """Simulate losing the network: the connection ends now and none is made for ``seconds``.

        Whatever was in flight stays in the outbox (its ack, if any, is lost with the link).
        """
        self._offline_until = max(self._offline_until, time.monotonic() + seconds)
        self.drops += 1
        if self._link is not None:
            self._link.cancel()

    @property
    def offline(self) -> bool:
        return time.monotonic() < self._offline_until

    @property
    def acked(self) -> int:
        return self.outbox.acked

    def counters(self) -> dict[str, int]:
        return {
            "recorded": self.recorded,
            "sent": self.sent,
            "uploaded": self.uploaded,
            "messages": self.messages,
            "acked": self.outbox.acked,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "refused": self.outbox.refused,
            "backlog": len(self.outbox),
            "reconnects": self.reconnects,
            "drops": self.drops,
        }

    # lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None or self._closed:
            raise RuntimeError(f"{self.label}: already started (or closed: make a new client)")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"telemetry:{self.label}")

    async def close(self) -> None:
        """Stop and wait for the connection task; idempotent. The outbox keeps what was not acked."""
        self._closed = True
        for task in (self._link, self._task):
            if task is not None:
                task.cancel()
        # The link may already have failed (its error not yet seen by ``_run``): what the loop would have
        # logged and retried is no reason for close() to raise, so outcomes are collected, not re-raised.
        tasks = [task for task in (self._link, self._task) if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._link = self._task = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def drained(self) -> None:
        """Return once the outbox is empty (every position acknowledged)."""
        await self._empty.wait()

    # the connection loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self._backoff[0]
        while not self._closed:
            if self.offline:
                await asyncio.sleep(max(0.0, self._offline_until - time.monotonic()))
                continue
            self._acked_here = False
            self._link = asyncio.create_task(self._connection(), name=f"telemetry-link:{self.label}")
            try:
                await self._link
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._closed or (current is not None and current.cancelling()):
                    raise
                self.last_error = "link dropped"  # drop_link(): the simulated outage
            except (aiohttp.ClientError, OSError, TimeoutError, LinkRefused, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: link down (%s)", self.label, self.last_error)
            except Exception as exc:  # a bug here must not silence the unit: log it, back off, go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: telemetry connection failed", self.label)
            finally:
                self._link = None
                self.connected = False
            if self._acked_here:
                delay = self._backoff[0]
            self.reconnects += 1
            if not self.offline:
                await asyncio.sleep(delay * self._rng.uniform(0.5, 1.5))
                delay = min(delay * 2, self._backoff[1])

    async def _connection(self) -> None:
        """One connection's life: the backlog over HTTP, then live on the socket until the link fails."""
        assert self._session is not None
        await self._upload_backlog(self._session)
        async with self._session.ws_connect(
            f"{self._base}/api/telemetry/ws", headers=self._headers, heartbeat=20, compress=0
        ) as ws:
            self.connected = True
            self._socket = ws
            try:
                await self._live(ws)
            finally:
                self._socket = None
        raise LinkRefused(f"socket closed by the server ({ws.close_code})")

    async def _upload_backlog(self, http: aiohttp.ClientSession) -> None:
        """Everything waiting at (re)connection, oldest first, in chunks the server accepts."""
        up_to = self.outbox.last_seq
        count = UPLOAD_BATCH
        while batch := self.outbox.oldest(count, up_to=up_to):
            body, batch = self._chunk(batch)
            async with http.post(
                f"{self._base}/api/telemetry/batch",
                data=body,
                headers={**self._headers, "Content-Type": "application/json"},
            ) as response:
                answer = await response.read()
            if response.status == 413 and len(batch) > 1:
                count = max(1, len(batch) // 2)  # the server's limit is lower than ours: smaller chunks
                continue
            if response.status != 200:
                raise LinkRefused(f"backlog upload answered {response.status}: {answer[:300]!r}")
            self.sent += len(batch)
            self.uploaded += len(batch)
            self._apply(orjson.loads(answer), batch)

    def _chunk(self, batch: list[dict[str, Any]]) -> tuple[bytes, list[dict[str, Any]]]:
        """The request body for the longest prefix of ``batch`` within ``max_body_bytes`` (at least one)."""
        parts: list[bytes] = []
        size = len(b'{"positions":[]}')
        for position in batch:
            encoded = orjson.dumps(position)
            if parts and size + len(encoded) + 1 > self._max_body:
                break
            parts.append(encoded)
            size += len(encoded) + 1
        return b'{"positions":[' + b",".join(parts) + b"]}", batch[: len(parts)]

    async def _live(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send positions one message at a time, each answered; the server's own messages (tasks) are read
        alongside by ``_read``, which hands the answers over."""
        answers: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(ws, answers), name=f"telemetry-reader:{self.label}")
        try:
            await self._send_positions(ws, answers)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, answers: asyncio.Queue[dict[str, Any] | None]) -> None:
        try:
            async for reply in ws:
                if reply.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = orjson.loads(reply.data)
                if not isinstance(message, dict):
                    continue
                if message.get("type") in ("ack", "error"):
                    answers.put_nowait(message)
                elif message.get("type") == "task":
                    await self._task_received(ws, message["task"])
                elif message.get("type") == "task_cancelled" and message.get("task_id") in self.tasks:
                    self.tasks[message["task_id"]]["status"] = "cancelled"
        finally:
            answers.put_nowait(None)  # the socket ended: the sender stops waiting

    async def _task_received(self, ws: aiohttp.ClientWebSocketResponse, task: dict[str, Any]) -> None:
        self.task_deliveries += 1
        new = task["id"] not in self.tasks
        if new:
            self.tasks[task["id"]] = dict(task)
            if self._on_task is not None:
                self._on_task(task)
        update = {"type": "task_update", "task_id": task["id"], "status": "acknowledged"}
        await ws.send_frame(orjson.dumps(update), aiohttp.WSMsgType.TEXT)

    async def report_task(self, task_id: str, status: str, note: str | None = None) -> None:
        """Report on a task (in_progress, done, failed) over the open socket; LinkRefused when offline."""
        if self._socket is None or self._socket.closed:
            raise LinkRefused("no open socket to report on")
        message = {"type": "task_update", "task_id": task_id, "status": status, "note": note}
        await self._socket.send_frame(orjson.dumps(message), aiohttp.WSMsgType.TEXT)
        self.tasks.setdefault(task_id, {"id": task_id})["status"] = status

    async def _send_positions(
        self, ws: aiohttp.ClientWebSocketResponse, answers: asyncio.Queue[dict[str, Any] | None]
    ) -> None:
        while not ws.closed:
            batch = self.outbox.oldest(LIVE_BATCH)
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            await ws.send_frame(orjson.dumps(batch[0] if len(batch) == 1 else batch), aiohttp.WSMsgType.TEXT)
            self.sent += len(batch)
            self.messages += 1
            answer = await self._answer(answers)
            if answer.get("type") == "ack":
                self._apply(answer, batch)
            else:  # the message was not taken (e.g. the server's buffer is full): keep it, wait, resend
                self.last_error = f"{answer.get('code')}: {answer.get('message')}"
                log.warning("%s: server refused a message: %s", self.label, self.last_error)
                await asyncio.sleep(1.0)

    async def _answer(self, answers: asyncio.Queue[dict[str, Any] | None]) -> dict[str, Any]:
        """The server's answer to the message in flight (an ack or an error)."""
        try:
            answer = await asyncio.wait_for(answers.get(), self._ack_timeout)
        except TimeoutError:
            raise LinkRefused(f"no ack within {self._ack_timeout:g} s") from None
        if answer is None:
            raise LinkRefused("socket ended while waiting for an ack")
        return answer

    def _apply(self, ack: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        """Drop from the outbox what the server holds, and what it refused (by seq, or by index in the batch)."""
        self._acked_here = True
        stored, duplicates = ack.get("stored", []), ack.get("duplicates", [])
        self.stored += len(stored)
        self.duplicates += len(duplicates)
        self.outbox.ack([*stored, *duplicates])
        rejected = ack.get("rejected", [])
        if rejected:
            seqs = [r["seq"] if r.get("seq") is not None else _seq_at(batch, r.get("index")) for r in rejected]
            self.rejected += len(self.outbox.reject(s for s in seqs if s is not None))
            log.warning("%s: %d positions rejected, e.g. %s", self.label, len(rejected), rejected[0])
        if not len(self.outbox):
            self._empty.set()


def _seq_at(batch: list[dict[str, Any]], index: object) -> int | None:
    if isinstance(index, int) and 0 <= index < len(batch):
        seq: int = batch[index]["seq"]
        return seq
    return None
