"""The device side: outbox bookkeeping and routes (pure), and the client against the real server."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ids import UnitId
from field_units.client import LIVE_BATCH, TelemetryClient
from field_units.outbox import Outbox, OutboxFull
from field_units.routes import HARBIN, RouteWalker, distance_m, speed_range
from persistence.models import UnitKind
from tests.conftest import World
from tests.test_live_tracking import open_screen

UNIT = UnitId("HLJ0102-U01")


def test_outbox_numbers_keeps_until_acked_and_refuses_when_full() -> None:
    box = Outbox(capacity=3)
    assert [box.add({"lat": n}) for n in range(3)] == [1, 2, 3]
    with pytest.raises(OutboxFull):
        box.add({"lat": 9})
    assert box.refused == 1 and len(box) == 3
    assert [p["seq"] for p in box.oldest(2)] == [1, 2]
    box.ack([1, 3, 42])
    assert [p["seq"] for p in box.oldest(10)] == [2] and box.acked == 2
    box.drop_rejected([2])
    assert len(box) == 0
    assert box.add({"lat": 1}) == 4  # numbers are never reused


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(list(UnitKind)), steps=st.integers(1, 400))
def test_routes_stay_plausible(seed: int, kind: UnitKind, steps: int) -> None:
    walker = RouteWalker(kind, seed)
    low, high = speed_range(kind)
    previous = walker.position
    for _ in range(steps):
        fix = walker.step(1.0)
        assert fix.speed_mps == 0 or low <= fix.speed_mps <= high
        assert 0 <= fix.heading_deg < 360 and 0 < fix.accuracy_m <= 12
        assert math.isfinite(fix.lat) and math.isfinite(fix.lon)
        assert distance_m(previous, walker.position) <= high * 1.0 + 0.01  # no teleporting
        previous = walker.position
    assert distance_m(HARBIN, walker.position) < 12_000  # stays in the city


def test_routes_are_deterministic_for_a_seed() -> None:
    a, b = RouteWalker(UnitKind.VEHICLE, 5), RouteWalker(UnitKind.VEHICLE, 5)
    assert [a.step(1.0) for _ in range(50)] == [b.step(1.0) for _ in range(50)]


def fix_now(age_s: float = 0.0, lat: float = 45.75) -> dict[str, Any]:
    return {"fix_time_ms": int((time.time() - age_s) * 1000), "lat": lat, "lon": 126.64, "speed_mps": 1.2}


async def test_a_five_minute_outage_loses_nothing_and_fills_the_trail(world: World) -> None:
    screen = await open_screen(world, "operator", "units")
    client = TelemetryClient(str(world.client.make_url("")), world.device_secret, label=UNIT, backoff=(0.05, 0.2))
    await client.start()
    try:
        for n in range(3):
            client.record(fix_now(lat=45.75 + n / 1000))
        async with asyncio.timeout(10):
            await client.drained()
        client.drop_link(0.5)
        for second in range(300, 0, -1):  # five minutes recorded while the link was down, 1 Hz
            client.record(fix_now(age_s=second, lat=45.70 + second / 100_000))
        assert len(client.outbox) == 300
        async with asyncio.timeout(15):
            await client.drained()
        assert client.uploaded >= 300 - LIVE_BATCH and client.reconnects >= 1
        assert await world.store.count_positions(UNIT) == 303
        points: set[int] = set()
        async with asyncio.timeout(10):
            while len(points) < 300:
                frame = await screen.next("frame")
                points.update(p[0] for t in frame["track"] for p in t["points"])
                points.update(v["position"]["fix_time_ms"] for v in frame["units"] if v["position"])
    finally:
        await client.close()


async def test_a_replayed_outbox_is_stored_once(world: World) -> None:
    """A unit that lost its acks (e.g. restarted) sends the same seqs again: duplicates, not new rows."""
    base = str(world.client.make_url(""))
    first = TelemetryClient(base, world.device_secret, label="first")
    await first.start()
    positions = [fix_now(age_s=60 - n) for n in range(40)]
    for p in positions:
        first.record(p)
    async with asyncio.timeout(10):
        await first.drained()
    await first.close()
    again = TelemetryClient(base, world.device_secret, label="again")
    for p in positions:
        again.record(p)
    await again.start()
    try:
        async with asyncio.timeout(10):
            await again.drained()
    finally:
        await again.close()
    assert again.duplicates == 40
    assert await world.store.count_positions(UNIT) == 40


async def test_a_revoked_device_keeps_its_positions_and_keeps_trying(world: World) -> None:
    await world.store.revoke_unit(UNIT)
    client = TelemetryClient(str(world.client.make_url("")), world.device_secret, label=UNIT, backoff=(0.05, 0.1))
    client.record(fix_now())
    await client.start()
    try:
        async with asyncio.timeout(5):
            while client.reconnects < 2:  # noqa: ASYNC110 (watching a counter from outside)
                await asyncio.sleep(0.05)
    finally:
        await client.close()
    assert len(client.outbox) == 1 and "401" in client.last_error
