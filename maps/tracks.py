"""Track simplification for display: Douglas–Peucker (shapely) in metres, raw points kept elsewhere."""

from __future__ import annotations

import math
from collections.abc import Sequence

from shapely.geometry import LineString

from maps.geo import EARTH_RADIUS_M


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
