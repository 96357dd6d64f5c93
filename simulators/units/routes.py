"""Plausible movement for simulated units: street-grid routes in a city's districts, with stops at sites.

Pure and deterministic for a seed: no clock, no I/O and no map data (a court network has no internet), so
streets are synthesised as a grid of blocks around each district's centre. A unit goes from site to site
along the grid (legs north-south or east-west, one or two turns), waits at some junctions (lights,
crossings), stays on site for minutes, and reports fixes with a few metres of slowly wandering GPS error
(a first-order Gauss-Markov process, as receivers show, rather than white noise that zig-zags the trail).
Positions are kept in metres east/north of the city centre (equirectangular: fine within a city).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from persistence.models import UnitKind

EARTH_RADIUS_M = 6_371_000.0
LatLon = tuple[float, float]
Metres = tuple[float, float]  # (east, north) of the city centre

BLOCK_M = 200.0  # a street every 200 m both ways (Harbin's old districts are about this)
GPS_CORRELATION_S = 30.0  # how long GPS error takes to wander off (Gauss-Markov time constant)


@dataclass(frozen=True, slots=True)
class Area:
    """A district units patrol: sites are grid junctions within ``radius_m`` of ``centre``."""

    name: str
    centre: LatLon
    radius_m: float


@dataclass(frozen=True, slots=True)
class City:
    name: str
    centre: LatLon
    areas: tuple[Area, ...]

    @classmethod
    def around(cls, centre: LatLon, name: str = "city", radius_m: float = 2_000.0) -> City:
        """Any other city: four districts north-west, north-east, south-west and south-east of its centre."""
        offset = radius_m * 1.1
        areas = tuple(
            Area(f"{name}-{label}", to_latlon(centre, (east * offset, north * offset)), radius_m)
            for label, east, north in (("NW", -1, 1), ("NE", 1, 1), ("SW", -1, -1), ("SE", 1, -1))
        )
        return cls(name, centre, areas)


#: 哈尔滨. District centres and radii are approximate (the urban core of each, not its legal boundary) and
#: chosen so that no area crosses the Songhua (松花江): 道里, 南岗 and 道外 lie south of it, 松北 north.
HARBIN = City(
    "哈尔滨",
    (45.757, 126.642),
    (
        Area("道里", (45.752, 126.600), 2_400.0),
        Area("南岗", (45.742, 126.665), 2_400.0),
        Area("道外", (45.772, 126.670), 1_800.0),
        Area("松北", (45.818, 126.555), 2_500.0),
    ),
)

#: Which district a court's units work in (court ids as in config/courts.toml).
HARBIN_COURT_AREAS = {"HLJ0102": "道里", "HLJ0103": "南岗", "HLJ0104": "道外", "HLJ0109": "松北"}


def to_latlon(origin: LatLon, point: Metres) -> LatLon:
    east, north = point
    lat = origin[0] + math.degrees(north / EARTH_RADIUS_M)
    lon = origin[1] + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(origin[0]))))
    return lat, lon


def to_metres(origin: LatLon, point: LatLon) -> Metres:
    north = math.radians(point[0] - origin[0]) * EARTH_RADIUS_M
    east = math.radians(point[1] - origin[1]) * EARTH_RADIUS_M * math.cos(math.radians(origin[0]))
    return east, north


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def heading_deg(a: Metres, b: Metres) -> float:
    """Compass heading of the move from a to b: 0 north, 90 east, always in [0, 360)."""
    heading = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0
    return 0.0 if heading >= 360.0 else heading  # -1e-17 % 360 rounds to 360.0


def speed_range(kind: UnitKind) -> tuple[float, float]:
    """Metres per second: officers on foot (1.0–1.8), or a vehicle in city traffic (8–17, 29–61 km/h)."""
    return (8.0, 17.0) if kind is UnitKind.VEHICLE else (1.0, 1.8)


def snap(point: Metres, block_m: float = BLOCK_M) -> Metres:
    """The nearest street junction."""
    return round(point[0] / block_m) * block_m, round(point[1] / block_m) * block_m


def grid_path(start: Metres, goal: Metres, rng: random.Random, block_m: float = BLOCK_M) -> list[Metres]:
    """Junctions from ``start`` to ``goal`` (both junctions) along streets: one turn (an L) or two (a Z).

    Returned without ``start``; consecutive points differ in one coordinate only, so every leg follows a
    street. The path stays inside the rectangle spanned by the two ends.
    """
    (e0, n0), (e1, n1) = start, goal
    if e0 == e1 or n0 == n1:
        return [goal] if goal != start else []
    east_first = rng.random() < 0.5
    if rng.random() < 0.5:  # a Z: turn once more at a street between the two
        if east_first:
            blocks = round(abs(e1 - e0) / block_m)
            e_mid = e0 + math.copysign(rng.randint(0, blocks) * block_m, e1 - e0)
            corners = [(e_mid, n0), (e_mid, n1)]
        else:
            blocks = round(abs(n1 - n0) / block_m)
            n_mid = n0 + math.copysign(rng.randint(0, blocks) * block_m, n1 - n0)
            corners = [(e0, n_mid), (e1, n_mid)]
    else:
        corners = [(e1, n0)] if east_first else [(e0, n1)]
    path: list[Metres] = []
    for point in [*corners, goal]:
        if point != (path[-1] if path else start):
            path.append(point)
    return path


@dataclass(frozen=True, slots=True)
class Fix:
    """What the unit's GPS reports after a step (``heading_deg`` is None when it is not moving)."""

    lat: float
    lon: float
    accuracy_m: float
    speed_mps: float
    heading_deg: float | None
    altitude_m: float
    battery_pct: float

    def telemetry(self, fix_time_ms: int, *, sos: bool = False) -> dict[str, Any]:
        """A position message (docs/protocols.md) without ``seq``, which the outbox assigns."""
        heading = None if self.heading_deg is None else round(self.heading_deg, 1) % 360.0
        return {
            "fix_time_ms": fix_time_ms,
            "lat": round(self.lat, 7),
            "lon": round(self.lon, 7),
            "accuracy_m": round(self.accuracy_m, 1),
            "speed_mps": round(self.speed_mps, 2),
            "heading_deg": heading,
            "altitude_m": round(self.altitude_m, 1),
            "battery_pct": round(self.battery_pct, 1),
            "sos": sos,
        }


class RouteWalker:
    """One unit going from site to site along the street grid of its area."""

    def __init__(self, kind: UnitKind, seed: int, *, city: City = HARBIN, area: Area | None = None) -> None:
        self._rng = random.Random(seed)
        self.kind = kind
        self.city = city
        self.area = area or self._rng.choice(city.areas)
        self._centre = to_metres(city.centre, self.area.centre)
        self._low, self._high = speed_range(kind)
        self._here = self._site()
        self._route: deque[Metres] = deque(grid_path(self._here, self._next_site(), self._rng))
        self._speed = self._rng.uniform(self._low, self._high)
        self._pause = self._rng.uniform(0, 30)  # start a little apart
        self.on_site = False
        hours = self._rng.uniform(36, 60) if kind is UnitKind.VEHICLE else self._rng.uniform(8, 12)
        self._drain_per_s = 100.0 / (hours * 3600)  # a charge lasts a shift (a vehicle's, two days)
        self.battery_pct = self._rng.uniform(55, 100)
        self._error: Metres = (0.0, 0.0)
        self._altitude = self._rng.uniform(130, 160)  # Harbin's plain is 120-180 m above sea level

    @property
    def position(self) -> LatLon:
        """Where the unit really is (the reported fix adds GPS error)."""
        return to_latlon(self.city.centre, self._here)

    def _site(self) -> Metres:
        """A junction within the area (drawn uniformly over the disc, then snapped to the grid)."""
        reach = max(0.0, self.area.radius_m - BLOCK_M) * math.sqrt(self._rng.random())
        angle = self._rng.uniform(0, 2 * math.pi)
        return snap((self._centre[0] + reach * math.cos(angle), self._centre[1] + reach * math.sin(angle)))

    def _next_site(self) -> Metres:
        """Walkers go to a site nearby (up to about 1.2 km); vehicles anywhere in the area."""
        reach = 1_200.0 if self.kind is not UnitKind.VEHICLE else math.inf
        best = self._site()
        for _ in range(20):
            if best != self._here and abs(best[0] - self._here[0]) + abs(best[1] - self._here[1]) <= reach:
                break
            best = self._site()
        if best == self._here:  # a tiny area: go round the block
            best = (best[0] + BLOCK_M, best[1])
        return best

    def step(self, dt: float) -> Fix:
        """Advance ``dt`` seconds and report a fix."""
        left = dt
        heading: float | None = None
        while left > 1e-9:
            if self._pause > 0:
                waited = min(self._pause, left)
                self._pause -= waited
                left -= waited
                continue
            if not self._route:
                self._arrive()
                continue
            self.on_site = False
            target = self._route[0]
            gap = math.hypot(target[0] - self._here[0], target[1] - self._here[1])
            heading = heading_deg(self._here, target) if gap > 0 else heading
            if self._speed * left < gap:
                fraction = self._speed * left / gap
                self._here = (
                    self._here[0] + (target[0] - self._here[0]) * fraction,
                    self._here[1] + (target[1] - self._here[1]) * fraction,
                )
                left = 0.0
                break
            left -= gap / self._speed
            self._here = target
            self._route.popleft()
            if self._route:
                self._junction()
        moving = heading is not None and self._pause <= 0 and not self.on_site
        self.battery_pct = max(0.0, self.battery_pct - self._drain_per_s * dt)
        return self._fix(dt, self._reported_speed() if moving else 0.0, heading if moving else None)

    def _junction(self) -> None:
        """At a corner: maybe wait (lights, a crossing), and take the next street at a new pace."""
        if self._rng.random() < (0.3 if self.kind is UnitKind.VEHICLE else 0.1):
            self._pause = self._rng.uniform(5, 45) if self.kind is UnitKind.VEHICLE else self._rng.uniform(3, 20)
        self._speed = self._rng.uniform(self._low, self._high)

    def _arrive(self) -> None:
        """On site for one to ten minutes (serving papers, an inspection), then on to the next site."""
        self.on_site = True
        self._pause = self._rng.uniform(60, 600)
        if self.battery_pct < 15:  # a spare battery, or the vehicle's charger
            self.battery_pct = 100.0
        self._route = deque(grid_path(self._here, self._next_site(), self._rng))
        self._speed = self._rng.uniform(self._low, self._high)

    def _reported_speed(self) -> float:
        """GPS (Doppler) speed: a few per cent of noise, never outside the kind's range."""
        return min(self._high, max(self._low, self._speed * self._rng.gauss(1.0, 0.03)))

    def _fix(self, dt: float, speed: float, heading: float | None) -> Fix:
        accuracy = self._rng.uniform(3.0, 8.0)
        if self._rng.random() < 0.05:  # between tall buildings
            accuracy = self._rng.uniform(10.0, 25.0)
        keep = math.exp(-dt / GPS_CORRELATION_S)
        spread = accuracy / 2 * math.sqrt(1 - keep * keep)
        self._error = (
            self._error[0] * keep + self._rng.gauss(0, spread),
            self._error[1] * keep + self._rng.gauss(0, spread),
        )
        lat, lon = to_latlon(self.city.centre, (self._here[0] + self._error[0], self._here[1] + self._error[1]))
        altitude = self._altitude + self._rng.gauss(0, accuracy / 2)
        return Fix(lat, lon, accuracy, speed, heading, altitude, self.battery_pct)
