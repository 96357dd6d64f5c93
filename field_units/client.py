"""The device side of telemetry (docs/protocols.md): live over the WebSocket, backlog over HTTP.

Every recorded position goes to the outbox first and leaves it only when the server acknowledges it, so a
dropped 4G link loses nothing: the unit keeps recording, reconnects with backoff and jitter, uploads what
piled up in batches (oldest first), then resumes live. One task per client, owned and cancelled on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import aiohttp
import orjson

from field_units.outbox import Outbox, OutboxFull

log = logging.getLogger(__name__)

LIVE_BATCH = 500  # the socket's per-message limit
UPLOAD_BATCH = 5_000  # the batch endpoint's limit


class TelemetryClient:
    def __init__(
        self,
        base_url: str,
        device_secret: str,
        *,
        outbox: Outbox | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        seed: int | None = None,
        label: str = "unit",
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {device_secret}"}
        self.outbox = outbox or Outbox()
        self._session = session
        self._own_session = session is None
        self._backoff = backoff
        self._rng = random.Random(seed)
        self.label = label
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._offline_until = 0.0
        self._closing = False
        self.connected = False
        self.sent = 0
        self.duplicates = 0
        self.rejected = 0
        self.reconnects = 0
        self.uploaded = 0
        self.last_error = ""

    # the device's side ---------------------------------------------------------------------------------
    def record(self, position: dict[str, Any]) -> int | None:
        """Keep a new position (without ``seq``: the outbox numbers it); None when the outbox is full."""
        try:
            seq = self.outbox.add(position)
        except OutboxFull:
            return None
        self._empty.clear()
        self._wake.set()
        return seq

    def drop_link(self, seconds: float) -> None:
        """Simulate losing the network: the socket closes and stays closed for ``seconds``."""
        self._offline_until = time.monotonic() + seconds
        self._wake.set()  # the live loop sees it, leaves, and the socket closes

    @property
    def offline(self) -> bool:
        return time.monotonic() < self._offline_until

    # lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"telemetry:{self.label}")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._ws is not None:
            await self._ws.close()
        if self._own_session and self._session is not None:
            await self._session.close()

    async def drained(self) -> None:
        """Return once the outbox is empty (every position acknowledged)."""
        await self._empty.wait()

    # the loop -------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self._backoff[0]
        while not self._closing:
            if self.offline:
                await self._sleep(self._offline_until - time.monotonic())
                continue
            try:
                await self._connected_session()
                delay = self._backoff[0]
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: link down (%s); retry in %.1fs", self.label, self.last_error, delay)
            self.connected = False
            self._ws = None
            if self._closing:
                return
            self.reconnects += 1
            await self._sleep(delay * self._rng.uniform(0.5, 1.5))
            delay = min(delay * 2, self._backoff[1])

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))

    async def _connected_session(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(
            f"{self._base}/api/telemetry/ws", headers=self._headers, heartbeat=20, compress=0
        ) as ws:
            self._ws = ws
            self.connected = True
            await self._upload_backlog()
            await self._live(ws)

    async def _upload_backlog(self) -> None:
        """After an outage: what piled up goes over HTTP in large batches, oldest first."""
        assert self._session is not None
        while len(self.outbox) > LIVE_BATCH and not self.offline:
            batch = self.outbox.oldest(UPLOAD_BATCH)
            async with self._session.post(
                f"{self._base}/api/telemetry/batch", json={"positions": batch}, headers=self._headers
            ) as response:
                body = await response.json(loads=orjson.loads)
                if response.status != 200:
                    raise ValueError(f"backlog upload refused ({response.status}): {body}")
            self.sent += len(batch)
            self.uploaded += len(batch)
            self._apply(body)

    async def _live(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not self._closing and not self.offline and not ws.closed:
            batch = self.outbox.oldest(LIVE_BATCH)
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            await ws.send_str(orjson.dumps(batch[0] if len(batch) == 1 else batch).decode())
            self.sent += len(batch)
            reply = await ws.receive(timeout=30)
            if reply.type != aiohttp.WSMsgType.TEXT:
                return  # closed (or dropped on purpose): the outer loop reconnects
            answer = orjson.loads(reply.data)
            if answer.get("type") == "ack":
                self._apply(answer)
            elif answer.get("type") == "error":
                self.last_error = f"{answer.get('code')}: {answer.get('message')}"
                log.warning("%s: server refused a message: %s", self.label, self.last_error)
                await self._sleep(1.0)  # e.g. the server's buffer is full: keep everything, try again

    def _apply(self, ack: dict[str, Any]) -> None:
        self.outbox.ack(ack["stored"] + ack["duplicates"])
        self.duplicates += len(ack["duplicates"])
        rejected = [r["seq"] for r in ack["rejected"] if r.get("seq") is not None]
        if ack["rejected"]:
            self.rejected += len(ack["rejected"])
            log.warning("%s: %d positions rejected, e.g. %s", self.label, len(ack["rejected"]), ack["rejected"][0])
        self.outbox.drop_rejected(rejected)
        if not len(self.outbox):
            self._empty.set()
