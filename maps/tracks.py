"""Track simplification for display: Douglas–Peucker (shapely) in metres, raw points kept elsewhere."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shapely.geometry import LineString

from core.errors import ValidationFailed
from maps.geo import EARTH_RADIUS_M, haversine_m

if TYPE_CHECKING:
    from core.ids import UnitId
    from persistence.models import Position
    from persistence.port import TelemetryStore


def simplify_indices(points: Sequence[tuple[float, float]], tolerance_m: float = 5.0) -> list[int]:
    """Which of the (lat, lon) points a Douglas–Peucker simplification keeps, as indices in order, so each
    kept point keeps its time and the rest of its record."""
    kept = simplify_track(points, tolerance_m)
    indices: list[int] = []
    at = 0
    for lat, lon in kept:
        while at < len(points) and (abs(points[at][0] - lat) > 1e-9 or abs(points[at][1] - lon) > 1e-9):
            at += 1
        if at == len(points):  # cannot happen: Douglas–Peucker keeps original vertices, in order
            raise ValueError("simplified point not found in the track")
        indices.append(at)
        at += 1
    return indices


def simplify_track(points: Sequence[tuple[float, float]], tolerance_m: float = 5.0) -> list[tuple[float, float]]:
    """Simplify (lat, lon) points; the first and last are always kept.

    Points are projected to a local equirectangular frame in metres around the track's first point, so the
    tolerance means the same on the ground at any latitude.
    """
    if len(points) < 3:
        return list(points)
    lat0 = math.radians(points[0][0])
    kx = EARTH_RADIUS_M * math.cos(lat0) * math.pi / 180
    ky = EARTH_RADIUS_M * math.pi / 180
    line = LineString([(lon * kx, lat * ky) for lat, lon in points])
    simplified = line.simplify(tolerance_m, preserve_topology=False)
    return [(y / ky, x / kx) for x, y in simplified.coords]


def find_stops(
    points: Sequence[tuple[int, float, float]], *, min_seconds: float = 180.0, radius_m: float = 50.0
) -> list[tuple[int, int, float, float]]:
    """Where a track dwelt: runs of (time_ms, lat, lon) points staying within ``radius_m`` of the run's first
    point for at least ``min_seconds``; each as (start_ms, end_ms, lat, lon) with the run's mean position."""
    stops: list[tuple[int, int, float, float]] = []
    i = 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and haversine_m(*points[i][1:], *points[j + 1][1:]) <= radius_m:
            j += 1
        if points[j][0] - points[i][0] >= min_seconds * 1000:
            run = points[i : j + 1]
            lat, lon = sum(p[1] for p in run) / len(run), sum(p[2] for p in run) / len(run)
            stops.append((run[0][0], run[-1][0], lat, lon))
            i = j + 1
        else:
            i += 1
    return stops


class TooManyPositions(ValidationFailed):
    """The period holds more positions than one read may (``MAX_READ_POSITIONS``): ask for a shorter one."""


#: Points a track is shown with at most (a report, the track route): a day at 1 Hz is 86,400 fixes, which a
#: browser draws slowly and folium renders for seconds; beyond this the track is simplified, and says so.
MAX_SHOWN_POINTS = 10_000
#: Positions one track read may hold (a day at about 5.8 Hz, some 100 MB while it is simplified); a period
#: with more is refused with the count, never cut: the caller asks for a shorter one.
MAX_READ_POSITIONS = 500_000
_PAGE = 10_000  # positions read from the store at a time


def simplify_within(
    points: Sequence[tuple[float, float]], cap: int = MAX_SHOWN_POINTS, tolerance_m: float = 0.0
) -> tuple[list[int], float]:
    """Indices of at most ``cap`` of the (lat, lon) points, and the tolerance it took: ``tolerance_m`` first
    (0: every point, when they fit), then from 5 m doubling until the simplified track fits. A track is
    never cut short: its first and last points are always kept."""
    if tolerance_m <= 0 and len(points) <= cap:
        return list(range(len(points))), 0.0
    tolerance = tolerance_m if tolerance_m > 0 else 5.0
    while True:
        kept = simplify_indices(points, tolerance)
        if len(kept) <= cap:
            return kept, tolerance
        tolerance *= 2


async def read_track(store: TelemetryStore, unit_id: UnitId, *, since_ms: int, until_ms: int) -> list[Position]:
    """Every position of the unit in [since_ms, until_ms), oldest first, read a page at a time (the store
    returns at most a page per call; one call would silently drop the end of a busy day).

    ``TooManyPositions`` past ``MAX_READ_POSITIONS``."""
    positions: list[Position] = []
    start, after = since_ms, (-1, -1)
    while True:
        page = await store.track(unit_id, since_ms=start, until_ms=until_ms, limit=_PAGE)
        fresh = [p for p in page if (p.fix_time_ms, p.seq) > after]
        positions.extend(fresh)
        if len(page) < _PAGE:
            return positions
        if len(positions) > MAX_READ_POSITIONS:
            raise TooManyPositions(
                f"unit {unit_id} has more than {MAX_READ_POSITIONS} positions from {since_ms} to {until_ms}; "
                "ask for a shorter period"
            )
        after = (page[-1].fix_time_ms, page[-1].seq)
        # the next page starts at the last fix time (positions sharing it are told apart by seq); a page
        # that brought nothing new moves on by a millisecond, so the loop always ends
        start = page[-1].fix_time_ms if fresh else page[-1].fix_time_ms + 1
