"""Track simplification for display: Douglas–Peucker (shapely) in metres, raw points kept elsewhere."""

from __future__ import annotations

import math
from collections.abc import Sequence

from shapely.geometry import LineString

from maps.geo import EARTH_RADIUS_M


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
