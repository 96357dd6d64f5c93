"""Redis bus: several server processes share topics, sequence numbers and history.

Publishing is one Lua script, atomic on the server: INCR the topic's sequence, XADD the event to the
topic's capped stream (the history, stream id ``<seq>-0``), PUBLISH it for live delivery. Each process
holds one pub/sub connection and fans events out to its local subscribers. Pub/sub may drop messages
(a reconnect, a slow link), so the reader watches sequence numbers and fills any gap from the stream
before delivering, keeping every subscriber's view gapless while the history lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from event_bus.port import Event, Subscription, encode_data

log = logging.getLogger(__name__)

# KEYS: seq key, stream key, channel. ARGV: payload json, history length.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local ts = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'ts', ts, 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ts .. ' ' .. ARGV[1])
return {seq, ts}
"""


class RedisBus:
    name = "redis"

    def __init__(
        self, url: str, *, history: int = 10_000, namespace: str = "cc", subscribe_timeout: float = 10.0
    ) -> None:
        self._url = url
        self._subscribe_timeout = subscribe_timeout
        self._history = history
        self._ns = namespace
        self._redis: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribers: dict[str, set[Subscription]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._last_seen: dict[str, int] = {}
        self._script: Any = None

    # keys ---------------------------------------------------------------------------------------------
    def _seq_key(self, topic: str) -> str:
        return f"{self._ns}:seq:{topic}"

    def _stream_key(self, topic: str) -> str:
        return f"{self._ns}:stream:{topic}"

    def _channel(self, topic: str) -> str:
        return f"{self._ns}:ev:{topic}"

    def _topic_of(self, channel: str) -> str:
        return channel.removeprefix(f"{self._ns}:ev:")

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("bus is not started")
        return self._redis

    # lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._redis = aioredis.from_url(self._url, decode_responses=False, health_check_interval=15)
        await self._redis.ping()
        self._script = self._redis.register_script(_PUBLISH)
        self._pubsub = self._redis.pubsub()
        self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for subscribers in self._subscribers.values():
            for sub in subscribers:
                sub.close()
        self._subscribers.clear()
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            self._pubsub = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # publishing ---------------------------------------------------------------------------------------
    async def publish(self, topic: str, data: Mapping[str, Any]) -> Event:
        payload = encode_data(data)
        seq, ts = await self._script(
            keys=[self._seq_key(topic), self._stream_key(topic), self._channel(topic)],
            args=[payload, self._history],
        )
        return Event(topic, int(seq), float(ts), data)

    # subscribing --------------------------------------------------------------------------------------
    @asynccontextmanager
    async def subscribe(self, topics: Iterable[str], *, max_queue: int = 1000) -> AsyncIterator[Subscription]:
        sub = Subscription(topics, max_queue)
        try:
            for topic in sub.topics:
                subscribers = self._subscribers.setdefault(topic, set())
                subscribers.add(sub)
                if len(subscribers) == 1:
                    await self._listen(topic)
                else:
                    await asyncio.shield(self._confirmed[topic])
            yield sub
        finally:
            sub.close()
            for topic in sub.topics:
                listeners = self._subscribers.get(topic)
                if listeners is None:
                    continue
                listeners.discard(sub)
                if not listeners:
                    del self._subscribers[topic]
                    self._confirmed.pop(topic, None)
                    self._last_seen.pop(topic, None)
                    if self._pubsub is not None:
                        with contextlib.suppress(aioredis.RedisError):
                            await self._pubsub.unsubscribe(self._channel(topic))

    async def _listen(self, topic: str) -> None:
        """SUBSCRIBE and wait for Redis to confirm, so no event published afterwards is missed."""
        assert self._pubsub is not None
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed[topic] = confirmed
        self._last_seen[topic] = int(await self.redis.get(self._seq_key(topic)) or 0)
        await self._pubsub.subscribe(self._channel(topic))
        await asyncio.wait_for(asyncio.shield(confirmed), timeout=self._subscribe_timeout)

    async def _read_forever(self) -> None:
        backoff = 0.1
        resubscribe = False  # after a lost connection: subscribe again to every topic still followed
        while True:
            try:
                assert self._pubsub is not None
                if resubscribe and self._subscribers:
                    await self._pubsub.subscribe(*(self._channel(topic) for topic in self._subscribers))
                    log.info("redis bus reader: connected again; %d topics followed", len(self._subscribers))
                    await self._catch_up()
                resubscribe = False
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.1
                if message is not None:
                    await self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError) as exc:
                log.warning("redis bus reader: %s; retrying in %.1fs", exc, backoff)
                resubscribe = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        topic = self._topic_of(channel)
        if kind == b"subscribe" or kind == "subscribe":
            future = self._confirmed.get(topic)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind not in (b"message", "message"):
            return
        raw: bytes = message["data"]
        seq_text, ts_text, payload = raw.split(b" ", 2)
        seq = int(seq_text)
        last = self._last_seen.get(topic)
        if last is None:
            return  # not (or no longer) listened to
        if seq <= last:
            if seq < last and int(await self.redis.get(self._seq_key(topic)) or 0) < last:
                # The counter went backwards: Redis restarted without its data. Everything the
                # subscribers knew by sequence is void; they resnapshot, and counting starts again here.
                log.warning("redis bus: topic %s restarted at %d (was %d); subscribers resnapshot", topic, seq, last)
                self._last_seen[topic] = seq
                for sub in self._subscribers.get(topic, ()):
                    sub.interrupt()
            return  # otherwise already delivered through a gap fill
        if seq > last + 1:
            missed = await self._range(topic, last + 1, seq - 1)
            for event in missed:
                self._deliver(event)
        self._deliver(Event(topic, seq, float(ts_text), orjson.loads(payload)))

    async def _catch_up(self) -> None:
        """After a lost connection, the events published meanwhile were never received: fill each topic's gap
        from its stream, or, if its counter went back (Redis restarted without its data), have the topic's
        subscribers resnapshot now rather than at the topic's next event, which may be long in coming."""
        for topic in list(self._subscribers):
            last = self._last_seen.get(topic)
            if last is None:
                continue
            current = int(await self.redis.get(self._seq_key(topic)) or 0)
            if current < last:
                log.warning(
                    "redis bus: topic %s restarted at %d (was %d); subscribers resnapshot", topic, current, last
                )
                self._last_seen[topic] = current
                for sub in self._subscribers.get(topic, ()):
                    sub.interrupt()
            elif current > last:
                for event in await self._range(topic, last + 1, current):
                    self._deliver(event)

    def _deliver(self, event: Event) -> None:
        last = self._last_seen.get(event.topic)
        if last is not None and event.seq <= last:
            return
        self._last_seen[event.topic] = event.seq
        for sub in self._subscribers.get(event.topic, ()):
            sub.offer(event)

    # history ------------------------------------------------------------------------------------------
    async def _range(self, topic: str, first: int, last: int | None) -> list[Event]:
        end = "+" if last is None else f"{last}-0"
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(self._stream_key(topic), min=f"{first}-0", max=end),
        )
        events = []
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-", 1)[0])
            events.append(Event(topic, seq, float(fields[b"ts"]), orjson.loads(fields[b"d"])))
        return events

    async def history(self, topic: str, after: int) -> list[Event] | None:
        last = await self.last_seq(topic)
        if after > last:
            return None  # a sequence Redis never issued: the bus was reset (e.g. Redis restarted)
        if after == last:
            return []
        events = await self._range(topic, after + 1, None)
        if not events or events[0].seq != after + 1:
            return None
        return events

    async def last_seq(self, topic: str) -> int:
        return int(await self.redis.get(self._seq_key(topic)) or 0)

    async def health(self) -> dict[str, Any]:
        info = await self.redis.info("server")
        return {"adapter": self.name, "version": info.get("redis_version")}
