"""The event bus contract, run against the in-process bus and real Redis alike."""

from __future__ import annotations

import asyncio

import pytest

from event_bus.port import EventBus, SubscriberLagged


async def _take(sub: object, n: int) -> list[tuple[str, int, dict[str, object]]]:
    got = []
    for _ in range(n):
        event = await asyncio.wait_for(sub.get(), 5)  # type: ignore[attr-defined]
        got.append((event.topic, event.seq, dict(event.data)))
    return got


async def test_sequence_numbers_are_per_topic(bus: EventBus) -> None:
    a1 = await bus.publish("a", {"n": 1})
    a2 = await bus.publish("a", {"n": 2})
    b1 = await bus.publish("b", {"n": 1})
    assert (a1.seq, a2.seq, b1.seq) == (1, 2, 1)
    assert a1.ts <= a2.ts and a1.ts > 1_700_000_000
    assert await bus.last_seq("a") == 2
    assert await bus.last_seq("never") == 0


async def test_subscriber_receives_its_topics_in_order(bus: EventBus) -> None:
    async with bus.subscribe(["units", "alarms"]) as sub:
        await bus.publish("units", {"u": "甲"})
        await bus.publish("other", {"x": 1})
        await bus.publish("alarms", {"kind": "sos"})
        await bus.publish("units", {"u": "乙"})
        got = await _take(sub, 3)
    assert got == [("units", 1, {"u": "甲"}), ("alarms", 1, {"kind": "sos"}), ("units", 2, {"u": "乙"})]


async def test_two_subscribers_each_get_everything(bus: EventBus) -> None:
    async with bus.subscribe(["t"]) as first, bus.subscribe(["t"]) as second:
        for n in range(5):
            await bus.publish("t", {"n": n})
        assert [e[2]["n"] for e in await _take(first, 5)] == list(range(5))
        assert [e[2]["n"] for e in await _take(second, 5)] == list(range(5))


async def test_history_resumes_after_a_sequence(bus: EventBus) -> None:
    for n in range(10):
        await bus.publish("t", {"n": n})
    missed = await bus.history("t", 7)
    assert missed is not None
    assert [(e.seq, e.data["n"]) for e in missed] == [(8, 7), (9, 8), (10, 9)]
    assert await bus.history("t", 10) == []
    assert await bus.history("empty", 0) == []


async def test_history_gone_means_snapshot(bus: EventBus) -> None:
    for n in range(200):  # the fixtures keep 50 (Redis trims approximately, in whole nodes)
        await bus.publish("t", {"n": n})
    assert await bus.history("t", 0) is None
    assert await bus.history("t", 500) is None  # a sequence never issued: the bus was reset
    recent = await bus.history("t", 190)
    assert recent is not None and [e.seq for e in recent] == list(range(191, 201))


async def test_slow_subscriber_is_told_it_lagged_and_others_are_not_slowed(bus: EventBus) -> None:
    async with bus.subscribe(["t"], max_queue=5) as slow, bus.subscribe(["t"], max_queue=100) as fast:
        for n in range(20):
            await bus.publish("t", {"n": n})
        assert [e[2]["n"] for e in await _take(fast, 20)] == list(range(20))
        with pytest.raises(SubscriberLagged):
            for _ in range(20):
                await asyncio.wait_for(slow.get(), 5)


async def test_lagged_subscriber_reports_where_to_resume(bus: EventBus) -> None:
    async with bus.subscribe(["t"], max_queue=3) as sub:
        await bus.publish("t", {"n": 0})
        await _take(sub, 1)
        for n in range(1, 10):
            await bus.publish("t", {"n": n})
        await asyncio.sleep(0.2)
        with pytest.raises(SubscriberLagged) as lag:
            await asyncio.wait_for(sub.get(), 5)
    assert lag.value.last_delivered == {"t": 1}
    resumed = await bus.history("t", lag.value.last_delivered["t"])
    assert resumed is not None and [e.data["n"] for e in resumed] == list(range(1, 10))


async def test_events_after_unsubscribe_are_not_delivered(bus: EventBus) -> None:
    async with bus.subscribe(["t"]) as sub:
        await bus.publish("t", {"n": 1})
        await _take(sub, 1)
    await bus.publish("t", {"n": 2})
    assert sub.get_nowait() is None
    health = await bus.health()
    assert health["adapter"] in ("memory", "redis")
