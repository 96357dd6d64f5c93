"""Track history: a unit's positions over a period, raw or simplified for display (Douglas–Peucker in metres),
each kept point keeping its own record; bounded periods."""

from __future__ import annotations

import time

from maps.tracks import simplify_indices
from tests.conftest import World
from tests.test_live_tracking import fix, open_unit, send

UNIT = "HLJ0102-U01"


def test_simplified_points_are_original_points_in_order() -> None:
    line = [(45.75 + i * 0.0001, 126.60 + (0.00001 if i % 2 else 0.0)) for i in range(50)]  # ~1 m zigzag north
    corner = [(line[-1][0], 126.60 + i * 0.0001) for i in range(1, 30)]  # then east
    points = line + corner
    kept = simplify_indices(points, tolerance_m=5)
    assert kept[0] == 0 and kept[-1] == len(points) - 1 and kept == sorted(kept)
    assert 49 in kept and len(kept) <= 4  # the corner survives, the zigzag does not


async def test_a_units_track_raw_and_simplified(world: World) -> None:
    unit = await open_unit(world)
    start = int(time.time() * 1000) - 120_000
    fixes = [(45.75 + i * 0.0001, 126.60 + (0.00001 if i % 2 else 0.0)) for i in range(40)]
    fixes += [(fixes[-1][0], 126.60 + i * 0.0001) for i in range(1, 20)]
    for seq, (lat, lon) in enumerate(fixes, start=1):
        await send(unit, fix(seq, lat=lat, lon=lon) | {"fix_time_ms": start + seq * 1000})
    period = f"since_ms={start}&until_ms={start + 100_000}"
    raw = await (await world.client.get(f"/api/units/{UNIT}/track?{period}", headers=world.auth("operator"))).json()
    assert raw["raw_points"] == len(fixes) and len(raw["points"]) == len(fixes)
    simple = await (await world.client.get(f"/api/units/{UNIT}/track?{period}&simplify_m=5",
                                           headers=world.auth("operator"))).json()  # fmt: skip
    assert simple["raw_points"] == len(fixes) and 3 <= len(simple["points"]) <= 4
    assert simple["points"][0]["seq"] == 1 and simple["points"][-1]["seq"] == len(fixes)
    assert any(p["seq"] == 40 for p in simple["points"])  # the corner, with its own time and sequence
    for query, status in [(f"since_ms={start}&until_ms={start + 25 * 3_600_000}", 422),
                          (f"{period}&simplify_m=-1", 422), (f"{period}&simplify_m=abc", 400),
                          (f"since_ms={start}&until_ms={start}", 422)]:  # fmt: skip
        bad = await world.client.get(f"/api/units/{UNIT}/track?{query}", headers=world.auth("operator"))
        assert bad.status == status, query


async def test_times_beyond_any_date_are_refused_with_the_parameter_named(world: World) -> None:
    """Epoch milliseconds past 9999-12-31 overflowed the database's integer (500); now each is named."""
    huge = "99999999999999999999"
    for path in (f"/api/units/{UNIT}/track?", f"/api/reports/units?unit_ids={UNIT}&"):
        for query, name in [(f"since_ms={huge}&until_ms=10", "since_ms"), (f"since_ms=0&until_ms={huge}",
                            "until_ms"), ("since_ms=-5&until_ms=10", "since_ms"), ("since_ms=1.5&until_ms=10",
                            "since_ms"), ("since_ms=0&until_ms=253402300800000", "until_ms")]:  # fmt: skip
            response = await world.client.get(path + query, headers=world.auth("operator"))
            assert response.status == 422, (path, query, await response.text())
            message = (await response.json())["error"]["message"]
            assert message.startswith(f"{name} must be epoch milliseconds from 0 to 253402300799999"), message
    end = 253_402_300_799_999
    edge = await world.client.get(f"/api/units/{UNIT}/track?since_ms={end - 1000}&until_ms={end}",
                                  headers=world.auth("operator"))  # fmt: skip
    assert edge.status == 200 and (await edge.json())["raw_points"] == 0
