"""A unit's clock running ahead: a fix stamped further ahead than ``tracking.max_clock_skew_seconds`` is
refused with the reason (the rest of its batch kept); one within the bound is kept but cannot freeze the
live view, which follows the newest position received, while a backlog of older fixes only fills the
trail. Checked through the unit socket and the live view, on SQLite and PostgreSQL (whose ``unit_latest``
the live view also reads)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from config.settings import StoreSettings, TrackingSettings
from tests.conftest import POSTGRES_DSN, AppFactory, World
from tests.test_live_tracking import fix, open_unit, send

UNIT = "HLJ0102-U01"


async def _live(world: World) -> dict[str, Any]:
    response = await world.client.get(f"/api/units/{UNIT}/live", headers=world.auth("operator"))
    assert response.status == 200
    position: dict[str, Any] = (await response.json())["position"]
    return position


async def test_a_fix_too_far_ahead_is_refused_and_the_rest_kept(world: World) -> None:
    unit = await open_unit(world)
    ahead = fix(2) | {"fix_time_ms": int(time.time() * 1000) + 300_000}  # five minutes ahead
    ack = await send(unit, [fix(1, age_ms=1000), ahead, fix(3)])
    assert ack["stored"] == [1, 3]
    [rejected] = ack["rejected"]
    assert rejected["index"] == 1 and rejected["seq"] == 2
    assert "fix_time_ms: 300 s ahead of the server's clock (limit 60 s); check the device clock" in rejected["message"]
    assert (await _live(world))["seq"] == 3


async def test_the_skew_bound_is_a_setting(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(max_clock_skew_seconds=10))
    unit = await open_unit(world)
    ack = await send(unit, fix(1) | {"fix_time_ms": int(time.time() * 1000) + 30_000})
    assert ack["stored"] == [] and "(limit 10 s)" in ack["rejected"][0]["message"]


async def test_the_live_view_follows_the_newest_received_position(make_world: AppFactory) -> None:
    await _newest_received_shows(make_world)


@pytest.mark.postgres
async def test_the_live_view_follows_the_newest_received_position_on_postgres(
    make_world: AppFactory, pg_schema: str
) -> None:
    await _newest_received_shows(lambda: make_world(store=StoreSettings(url=POSTGRES_DSN), schema=pg_schema))


async def _newest_received_shows(make: Callable[[], Awaitable[World]]) -> None:
    world = await make()
    unit = await open_unit(world)
    now = int(time.time() * 1000)
    ahead = fix(1, lat=45.70) | {"fix_time_ms": now + 50_000}  # a fast clock, within the bound: kept
    assert (await send(unit, ahead))["stored"] == [1]
    assert (await _live(world))["seq"] == 1
    assert (await send(unit, fix(2, lat=45.71)))["stored"] == [2]  # received later, stamped earlier
    assert (await _live(world))["seq"] == 2  # the skewed fix did not hold the marker
    backlog = [fix(seq, age_ms=600_000 - seq * 1000, lat=45.60) for seq in range(3, 8)]  # ten minutes old
    assert (await send(unit, backlog))["stored"] == [3, 4, 5, 6, 7]
    assert (await _live(world))["seq"] == 2  # history fills the trail, the marker stays
    assert (await send(unit, fix(8, lat=45.72)))["stored"] == [8]
    live = await _live(world)
    assert live["seq"] == 8 and live["lat"] == 45.72
    points = await world.client.get(f"/api/units/{UNIT}/track?since_ms={now - 700_000}&until_ms={now + 60_000}",
                                    headers=world.auth("operator"))  # fmt: skip
    assert sorted(p["seq"] for p in (await points.json())["points"]) == list(range(1, 9))  # every fix stored
    restarted = await make()  # another process on the same database loads the newest from the store
    assert (await _live(restarted))["seq"] == 8
