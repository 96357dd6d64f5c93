"""Plausible movement for simulated units: street-grid routes around a city, with stops at sites.

Pure and deterministic for a seed: no clock, no I/O. A walker advances by ``dt`` seconds and reports
where the unit is, how fast it goes and where it heads; the simulator turns that into telemetry.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from persistence.models import UnitKind

EARTH_RADIUS_M = 6_371_000.0
HARBIN = (45.757, 126.642)  # 哈尔滨 city centre (中央大街 / 南岗)


@dataclass(frozen=True, slots=True)
class Fix:
    lat: float
    lon: float
    speed_mps: float
    heading_deg: float
    accuracy_m: float


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """Move a point by metres north and east (equirectangular: fine over a city)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360


def speed_range(kind: UnitKind) -> tuple[float, float]:
    """Metres per second: officers on foot, or a vehicle in city traffic."""
    return (8.0, 14.0) if kind is UnitKind.VEHICLE else (1.1, 1.7)


class RouteWalker:
    """One unit moving along a street grid (legs north-south or east-west) and stopping at sites."""

    def __init__(
        self, kind: UnitKind, seed: int, *, centre: tuple[float, float] = HARBIN, radius_m: float = 6000
    ) -> None:
        self._rng = random.Random(seed)
        self._kind = kind
        self._centre = centre
        self._radius = radius_m
        self.position = _offset(
            *centre, self._rng.uniform(-radius_m, radius_m) * 0.8, self._rng.uniform(-radius_m, radius_m) * 0.8
        )
        self._target = self._next_target()
        self._speed = self._rng.uniform(*speed_range(kind))
        self._heading = bearing_deg(self.position, self._target)
        self._stopped_for = 0.0  # seconds left at the current site

    def _next_target(self) -> tuple[float, float]:
        """A corner one block-run away along one axis, steering back when far from the centre."""
        leg = self._rng.uniform(150, 900) * (4 if self._kind is UnitKind.VEHICLE else 1)
        north = self._rng.random() < 0.5
        sign = self._rng.choice((-1, 1))
        lat, lon = self.position
        offset_n = (lat - self._centre[0]) * 111_000
        offset_e = (lon - self._centre[1]) * 111_000 * math.cos(math.radians(lat))
        if north and abs(offset_n + sign * leg) > self._radius:
            sign = -sign
        if not north and abs(offset_e + sign * leg) > self._radius:
            sign = -sign
        return _offset(lat, lon, sign * leg if north else 0.0, 0.0 if north else sign * leg)

    def step(self, dt: float) -> Fix:
        """Advance ``dt`` seconds; the reported position carries a few metres of GPS noise."""
        if self._stopped_for > 0:
            self._stopped_for = max(0.0, self._stopped_for - dt)
            return self._fix(0.0)
        remaining = distance_m(self.position, self._target)
        travel = self._speed * dt
        if travel >= remaining:
            self.position = self._target
            if self._rng.random() < 0.15:  # arrived at a site: on site for a while
                self._stopped_for = self._rng.uniform(20, 120)
            self._target = self._next_target()
            self._speed = self._rng.uniform(*speed_range(self._kind))
            self._heading = bearing_deg(self.position, self._target)
            return self._fix(0.0 if self._stopped_for else self._speed)
        fraction = travel / remaining
        lat = self.position[0] + (self._target[0] - self.position[0]) * fraction
        lon = self.position[1] + (self._target[1] - self.position[1]) * fraction
        self.position = (lat, lon)
        return self._fix(self._speed)

    def _fix(self, speed: float) -> Fix:
        accuracy = self._rng.uniform(3.0, 12.0)
        noisy = _offset(*self.position, self._rng.gauss(0, accuracy / 3), self._rng.gauss(0, accuracy / 3))
        return Fix(noisy[0], noisy[1], speed, self._heading, round(accuracy, 1))
