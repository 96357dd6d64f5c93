"""The nearest available units to a point (dispatch), by great-circle distance, with an ETA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maps.geo import haversine_many_m


@dataclass(frozen=True)
class Candidate:
    unit_id: str
    distance_m: float
    eta_s: float


def nearest_units(
    lat: float,
    lon: float,
    units: Sequence[tuple[str, float, float]],
    *,
    limit: int = 5,
    speed_mps: float = 8.0,
) -> list[Candidate]:
    """The ``limit`` closest of ``units`` (id, lat, lon), closest first, ties by id; ETA at ``speed_mps``."""
    if not units or limit <= 0:
        return []
    ids = [u[0] for u in units]
    distances = haversine_many_m(lat, lon, np.array([u[1] for u in units]), np.array([u[2] for u in units]))
    order = sorted(range(len(units)), key=lambda i: (float(distances[i]), ids[i]))[:limit]
    return [Candidate(ids[i], float(distances[i]), float(distances[i]) / speed_mps) for i in order]
