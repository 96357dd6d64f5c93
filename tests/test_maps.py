"""Maps (pure): geofence containment against brute force, debounce against a drifting track, nearest
units against brute force, track simplification."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Polygon

from maps.geo import haversine_m
from maps.geofences import Crossing, Debouncer, FenceKind, Geofence, GeofenceIndex
from maps.nearest import nearest_units
from maps.tracks import simplify_track

HARBIN = (45.757, 126.642)


def square(fence_id: str, lat: float, lon: float, half: float) -> Geofence:
    poly = Polygon(
        [(lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half), (lon - half, lat + half)]
    )
    return Geofence(fence_id, fence_id, FenceKind.TARGET, polygon=poly)


def test_polygons_and_circles() -> None:
    fence = square("a", *HARBIN, 0.01)
    assert fence.contains(*HARBIN) and not fence.contains(HARBIN[0] + 0.02, HARBIN[1])
    circle = Geofence("c", "c", FenceKind.NO_GO, centre=HARBIN, radius_m=500)
    assert circle.contains(HARBIN[0] + 0.004, HARBIN[1])  # ~445 m north
    assert not circle.contains(HARBIN[0] + 0.005, HARBIN[1])  # ~556 m north
    with pytest.raises(ValueError):
        Geofence("x", "x", FenceKind.TARGET)
    with pytest.raises(ValueError):
        Geofence("x", "x", FenceKind.TARGET, polygon=Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]))  # bow-tie
    feature = {"type": "Feature", "id": "p1", "properties": {"name": "被执行人房产", "kind": "target", "radius_m": 80},
               "geometry": {"type": "Point", "coordinates": [HARBIN[1], HARBIN[0]]}}  # fmt: skip
    assert Geofence.from_geojson(feature).contains(*HARBIN)


fences_strategy = st.lists(
    st.tuples(st.floats(45.6, 45.9), st.floats(126.4, 126.9), st.floats(0.001, 0.05), st.booleans()),
    min_size=1, max_size=40,
)  # fmt: skip
points_strategy = st.lists(st.tuples(st.floats(45.55, 45.95), st.floats(126.35, 126.95)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(fences_strategy, points_strategy)
def test_the_index_finds_exactly_what_brute_force_finds(specs: list[tuple[float, float, float, bool]],
                                                        points: list[tuple[float, float]]) -> None:  # fmt: skip
    fences = [
        Geofence(f"f{i}", "", FenceKind.TARGET, centre=(lat, lon), radius_m=size * 50_000) if circle
        else square(f"f{i}", lat, lon, size)
        for i, (lat, lon, size, circle) in enumerate(specs)
    ]  # fmt: skip
    index = GeofenceIndex(fences)
    many = index.containing_many([p[0] for p in points], [p[1] for p in points])
    for (lat, lon), bulk in zip(points, many, strict=True):
        expected = {f.id for f in fences if f.contains(lat, lon)}
        assert index.containing(lat, lon) == expected == bulk


def test_gps_drift_along_a_boundary_does_not_flap_and_a_real_crossing_counts_once() -> None:
    fence = square("site", *HARBIN, 0.005)
    index = GeofenceIndex([fence])
    debounce = Debouncer(fixes=3, seconds=5)
    rng = random.Random(3)
    edge_lon = HARBIN[1] + 0.005
    events = []
    t = 0
    for _ in range(120):  # two minutes standing on the boundary, ±3 m of noise: in and out every few fixes
        t += 1000
        lon = edge_lon + rng.gauss(0, 0.00003)
        events += debounce.update("U1", t, index.containing(HARBIN[0], lon))
    assert len(events) <= 2, events  # at most settling once on one side, never flapping
    settled = [e.crossing for e in events]
    for _ in range(30):  # then walks well inside
        t += 1000
        events += debounce.update("U1", t, index.containing(*HARBIN))
    for _ in range(30):  # and leaves
        t += 1000
        events += debounce.update("U1", t, index.containing(HARBIN[0] + 0.02, HARBIN[1]))
    after = [e.crossing for e in events][len(settled) :]
    assert after[-1] == Crossing.EXIT and after.count(Crossing.EXIT) == 1
    assert all(e.fence_id == "site" and e.unit_id == "U1" for e in events)


def test_a_crossing_needs_both_the_fixes_and_the_seconds() -> None:
    debounce = Debouncer(fixes=3, seconds=5)
    assert debounce.update("U", 0, {"f"}) == []
    assert debounce.update("U", 100, {"f"}) == []
    assert debounce.update("U", 200, {"f"}) == []  # three fixes but 0.2 s
    [event] = debounce.update("U", 5000, {"f"})
    assert event.crossing is Crossing.ENTER and event.at_ms == 5000


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(44.0, 47.0), st.floats(125.0, 128.0)), min_size=0, max_size=60),
       st.floats(44.0, 47.0), st.floats(125.0, 128.0), st.integers(1, 8))  # fmt: skip
def test_nearest_units_match_brute_force(units: list[tuple[float, float]], lat: float, lon: float, k: int) -> None:
    named = [(f"U{i:03d}", a, b) for i, (a, b) in enumerate(units)]
    got = nearest_units(lat, lon, named, limit=k, speed_mps=10)
    brute = sorted(((haversine_m(lat, lon, a, b), uid) for uid, a, b in named))[:k]
    assert [c.unit_id for c in got] == [uid for _, uid in brute]
    for candidate, (distance, _) in zip(got, brute, strict=True):
        assert math.isclose(candidate.distance_m, distance, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(candidate.eta_s, distance / 10, rel_tol=1e-9, abs_tol=1e-6)


def test_simplification_keeps_ends_and_stays_within_tolerance() -> None:
    rng = random.Random(1)
    points = [(HARBIN[0] + i * 1e-5 + rng.gauss(0, 1e-6), HARBIN[1] + i * 1e-5) for i in range(500)]
    simple = simplify_track(points, tolerance_m=5)
    assert simple[0] == pytest.approx(points[0]) and simple[-1] == pytest.approx(points[-1])
    assert len(simple) < len(points) / 10
    line = LineString([(lon, lat) for lat, lon in simple])
    worst = max(line.distance(LineString([(p[1], p[0]), (p[1], p[0])]).centroid) for p in points)
    assert worst * 111_000 < 6  # degrees to metres, roughly: within the 5 m tolerance plus rounding
