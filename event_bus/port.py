"""The event bus port: topics with per-topic sequence numbers and a bounded history.

Every event carries its topic, a sequence number that increases by one per topic, and a timestamp, so a
screen that reconnects asks for the events after the last sequence it saw. When that history is gone
(trimmed, or the bus was reset), ``history`` answers ``None`` and the screen takes a fresh snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    seq: int
    ts: float  # seconds since the Unix epoch, set by the bus when published
    data: Mapping[str, Any]


class Preencoded(msgspec.Struct, frozen=True, gc=False):
    """A value published already serialised (``json``): a bus writes those bytes as they are.

    Subscribers in the publishing process get the value itself; through a bus shared with other processes
    they get what ``json`` decodes to. A subclass adds what its subscribers read without decoding."""

    json: bytes


def encode_data(data: Mapping[str, Any]) -> bytes:
    """An event's data as JSON, ``Preencoded`` values spliced in as they are."""
    return orjson.dumps(data, default=_preencoded)


def _preencoded(value: object) -> orjson.Fragment:
    if isinstance(value, Preencoded):
        return orjson.Fragment(value.json)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class SubscriberLagged(Exception):
    """The subscriber's bounded queue overflowed; events were dropped and it must resume or resnapshot."""

    def __init__(self, last_delivered: dict[str, int]) -> None:
        super().__init__("subscriber fell behind; its queue overflowed")
        self.last_delivered = last_delivered


class Subscription:
    """Events for one subscriber, in order, through a bounded queue.

    The bus never waits on a subscriber: when the queue is full the subscription is marked lagged, its
    queue is dropped, and the next ``get`` raises ``SubscriberLagged`` with the last sequence delivered
    per topic so the subscriber can resume from history (or resnapshot); events offered after that are
    delivered again, so a subscriber that has caught up carries on.
    """

    def __init__(self, topics: Iterable[str], max_queue: int) -> None:
        self.topics = frozenset(topics)
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=max_queue)
        self._lagged = False
        self._last: dict[str, int] = {}
        self._closed = False

    def offer(self, event: Event) -> None:
        """Called by the bus; never blocks."""
        if self._lagged or self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._lagged = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(event)  # wakes a waiting get(), which then reports the lag

    def interrupt(self) -> None:
        """Make the subscriber resume or resnapshot now (the bus lost its history, e.g. Redis restarted)."""
        if self._closed:
            return
        self._lagged = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(Event("", 0, 0.0, {}))  # wakes a waiting get(), which then reports it

    async def get(self) -> Event:
        return self._take(await self._queue.get())

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when the queue is empty."""
        if self._queue.empty():
            return None
        return self._take(self._queue.get_nowait())

    def _take(self, event: Event) -> Event:
        if self._lagged:
            self._lagged = False  # reported once; what is offered from now on is delivered
            raise SubscriberLagged(dict(self._last))
        self._last[event.topic] = event.seq
        return event

    def close(self) -> None:
        self._closed = True

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EventBus(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, data: Mapping[str, Any]) -> Event:
        """Assign the next sequence number of ``topic``, keep the event in history, deliver it."""

    def subscribe(self, topics: Iterable[str], *, max_queue: int = 1000) -> AbstractAsyncContextManager[Subscription]:
        """Receive every event published on ``topics`` after the context is entered."""

    async def history(self, topic: str, after: int) -> list[Event] | None:
        """Events with seq > after, oldest first; ``None`` when some of them are no longer kept."""

    async def last_seq(self, topic: str) -> int:
        """Sequence number of the newest event on ``topic`` (0 when none)."""

    async def health(self) -> dict[str, Any]: ...
