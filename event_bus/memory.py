"""In-process bus: the embedded default, for a single server process.

History is kept serialised (bytes), not as the published dicts: a few thousand frames of unit views as
live objects would cost memory and, worse, garbage-collector passes over millions of objects.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson

from event_bus.port import Event, Subscription, encode_data


class MemoryBus:
    name = "memory"

    def __init__(self, history: int = 10_000) -> None:
        self._history_size = history
        self._seq: dict[str, int] = {}
        self._history: dict[str, deque[tuple[int, float, bytes]]] = {}
        self._subscribers: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for subscribers in self._subscribers.values():
            for sub in subscribers:
                sub.close()
        self._subscribers.clear()

    async def publish(self, topic: str, data: Mapping[str, Any]) -> Event:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        event = Event(topic, seq, time.time(), data)
        kept = self._history.get(topic)
        if kept is None:
            kept = self._history[topic] = deque(maxlen=self._history_size)
        kept.append((seq, event.ts, encode_data(data)))
        for sub in self._subscribers.get(topic, ()):
            sub.offer(event)
        return event

    @asynccontextmanager
    async def subscribe(self, topics: Iterable[str], *, max_queue: int = 1000) -> AsyncIterator[Subscription]:
        sub = Subscription(topics, max_queue)
        for topic in sub.topics:
            self._subscribers.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            sub.close()
            for topic in sub.topics:
                subscribers = self._subscribers.get(topic)
                if subscribers is not None:
                    subscribers.discard(sub)
                    if not subscribers:
                        del self._subscribers[topic]

    async def history(self, topic: str, after: int) -> list[Event] | None:
        last = self._seq.get(topic, 0)
        if after > last:
            return None  # the subscriber saw a sequence this bus never issued: it was reset
        if after == last:
            return []
        kept = self._history.get(topic, deque())
        if not kept or kept[0][0] > after + 1:
            return None
        return [Event(topic, seq, ts, orjson.loads(raw)) for seq, ts, raw in kept if seq > after]

    async def last_seq(self, topic: str) -> int:
        return self._seq.get(topic, 0)

    async def health(self) -> dict[str, Any]:
        return {"adapter": self.name, "topics": len(self._seq)}
