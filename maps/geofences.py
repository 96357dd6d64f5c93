"""Geofences: which fences contain a unit, with a spatial index so the cost stays flat as fences grow,
and enter/exit events debounced so GPS drift along a boundary does not flap.

Polygons are in lon/lat (GeoJSON order); circles are a centre and a radius in metres, tested exactly by
great-circle distance. An STRtree over the fences' bounding boxes picks the few candidates a position
can be in; only those are tested exactly. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point, box, shape
from shapely.geometry.base import BaseGeometry

from maps.geo import degrees_box, haversine_m


class FenceKind(StrEnum):
    JURISDICTION = "jurisdiction"  # a court's area
    TARGET = "target"  # a debtor's property, an operation's site
    NO_GO = "no_go"  # an area units must not enter


@dataclass(frozen=True)
class Geofence:
    id: str
    name: str
    kind: FenceKind
    polygon: BaseGeometry | None = None  # lon/lat
    centre: tuple[float, float] | None = None  # (lat, lon) of a circle
    radius_m: float | None = None

    def __post_init__(self) -> None:
        if (self.polygon is None) == (self.centre is None):
            raise ValueError("a geofence is either a polygon or a circle")
        if self.centre is not None and (self.radius_m is None or self.radius_m <= 0):
            raise ValueError("a circle needs a positive radius_m")
        if self.polygon is not None and (self.polygon.is_empty or not self.polygon.is_valid):
            raise ValueError(f"geofence {self.id}: polygon is empty or invalid")

    @classmethod
    def from_geojson(cls, feature: dict[str, Any]) -> Geofence:
        """A GeoJSON Feature: a Polygon/MultiPolygon, or a Point with ``properties.radius_m``."""
        props = feature.get("properties") or {}
        geometry = feature["geometry"]
        kind = FenceKind(props.get("kind", FenceKind.TARGET))
        name = str(props.get("name", feature.get("id", "")))
        fence_id = str(feature.get("id") or props.get("id") or name)
        if geometry["type"] == "Point":
            lon, lat = geometry["coordinates"][:2]
            return cls(fence_id, name, kind, centre=(lat, lon), radius_m=float(props["radius_m"]))
        return cls(fence_id, name, kind, polygon=shape(geometry))

    def bounds(self) -> tuple[float, float, float, float]:
        if self.polygon is not None:
            minx, miny, maxx, maxy = self.polygon.bounds
            return (minx, miny, maxx, maxy)
        assert self.centre is not None and self.radius_m is not None
        return degrees_box(self.centre[0], self.centre[1], self.radius_m)

    def contains(self, lat: float, lon: float) -> bool:
        if self.polygon is not None:
            return bool(self.polygon.covers(Point(lon, lat)))
        assert self.centre is not None and self.radius_m is not None
        return haversine_m(lat, lon, *self.centre) <= self.radius_m


class GeofenceIndex:
    """Fences behind an STRtree of their bounding boxes; rebuilt when the set of fences changes."""

    def __init__(self, fences: Iterable[Geofence]) -> None:
        self.fences: list[Geofence] = list(fences)
        for fence in self.fences:
            if fence.polygon is not None:
                shapely.prepare(fence.polygon)
        self._tree = shapely.STRtree([box(*f.bounds()) for f in self.fences])

    def containing(self, lat: float, lon: float) -> set[str]:
        """Ids of the fences that contain the point."""
        candidates = self._tree.query(Point(lon, lat))
        return {self.fences[i].id for i in candidates if self.fences[i].contains(lat, lon)}

    def containing_many(self, lats: Sequence[float], lons: Sequence[float]) -> list[set[str]]:
        """The same for many points at once (one vectorised index query for a whole tick)."""
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        point_index, fence_index = self._tree.query(points)
        result: list[set[str]] = [set() for _ in range(len(points))]
        for p, f in zip(point_index.tolist(), fence_index.tolist(), strict=True):
            fence = self.fences[f]
            if fence.contains(lats[p], lons[p]):
                result[p].add(fence.id)
        return result


class Crossing(StrEnum):
    ENTER = "enter"
    EXIT = "exit"


@dataclass(frozen=True)
class FenceEvent:
    unit_id: str
    fence_id: str
    crossing: Crossing
    at_ms: int


@dataclass
class _Track:
    """One (unit, fence): the debounced side and the run of fixes seen on the other side."""

    inside: bool = False
    run: int = 0
    run_since_ms: int = 0


@dataclass
class Debouncer:
    """A crossing counts once the unit has been on the new side for ``fixes`` fixes AND ``seconds``.

    A unit drifting a few metres across a boundary and back never completes a run, so it never flaps.
    """

    fixes: int = 3
    seconds: float = 5.0
    _tracks: dict[str, dict[str, _Track]] = field(default_factory=dict)  # unit -> fence -> track

    def update(self, unit_id: str, at_ms: int, inside: set[str]) -> list[FenceEvent]:
        """Feed one fix's containing fences; return the crossings it completes."""
        events: list[FenceEvent] = []
        tracks = self._tracks.get(unit_id)
        if tracks is None:
            if not inside:
                return events
            tracks = self._tracks[unit_id] = {}
        for fence_id in tracks.keys() | inside if tracks else inside:
            track = tracks.get(fence_id)
            if track is None:
                track = tracks[fence_id] = _Track()
            now_inside = fence_id in inside
            if now_inside == track.inside:
                track.run = 0
                continue
            if track.run == 0:
                track.run_since_ms = at_ms
            track.run += 1
            if track.run >= self.fixes and at_ms - track.run_since_ms >= self.seconds * 1000:
                track.inside, track.run = now_inside, 0
                events.append(FenceEvent(unit_id, fence_id, Crossing.ENTER if now_inside else Crossing.EXIT, at_ms))
            if not track.inside and track.run == 0:
                del tracks[fence_id]  # outside and settled: nothing to remember
        if not tracks:
            del self._tracks[unit_id]
        return events
