"""GeoJSON from people (drawn on the console map or imported from a file) checked before it becomes a
geofence: every refusal says which feature and what is wrong. Pure."""

from __future__ import annotations

import math
from typing import Any

from shapely.geometry import shape
from shapely.validation import explain_validity

from maps.geofences import FenceKind, Geofence

MAX_RADIUS_M = 50_000.0
MAX_VERTICES = 10_000


class BadFeature(ValueError):
    """A feature that cannot be a geofence; the message says why."""


def _check_position(position: Any, where: str) -> None:
    if (not isinstance(position, list | tuple) or len(position) < 2
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in position[:2])):  # fmt: skip
        raise BadFeature(f"{where}: a position is [longitude, latitude] in numbers, got {position!r}")
    lon, lat = position[0], position[1]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise BadFeature(f"{where}: [{lon}, {lat}] is not [longitude, latitude] on Earth (GeoJSON is lon first)")


def fence_from_feature(feature: Any, fence_id: str, *, where: str = "feature") -> Geofence:
    """A Feature with a Polygon or MultiPolygon, or a Point and ``properties.radius_m`` (a circle)."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise BadFeature(f"{where}: expected a GeoJSON Feature object")
    props = feature.get("properties") or {}
    geometry = feature.get("geometry")
    if not isinstance(props, dict) or not isinstance(geometry, dict):
        raise BadFeature(f"{where}: a Feature needs a geometry object and properties")
    try:
        kind = FenceKind(props.get("kind", FenceKind.TARGET.value))
    except ValueError:
        raise BadFeature(f"{where}: kind must be one of {[k.value for k in FenceKind]}") from None
    name = str(props.get("name") or "").strip()
    if not name or len(name) > 100:
        raise BadFeature(f"{where}: properties.name is required (at most 100 characters)")
    kind_of_geometry = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind_of_geometry == "Point":
        _check_position(coordinates, where)
        radius = props.get("radius_m")
        if not isinstance(radius, int | float) or not 0 < radius <= MAX_RADIUS_M:
            raise BadFeature(f"{where}: a circle (Point) needs properties.radius_m between 0 and {MAX_RADIUS_M:g}")
        assert isinstance(coordinates, list)
        return Geofence(fence_id, name, kind, centre=(coordinates[1], coordinates[0]), radius_m=float(radius))
    if kind_of_geometry not in ("Polygon", "MultiPolygon"):
        raise BadFeature(
            f"{where}: geometry must be Polygon, MultiPolygon or Point (a circle), got {kind_of_geometry!r}"
        )
    rings = coordinates if kind_of_geometry == "Polygon" else [r for p in coordinates or [] for r in p]
    if not isinstance(rings, list) or not rings:
        raise BadFeature(f"{where}: a polygon needs at least one ring of positions")
    count = 0
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise BadFeature(f"{where}: a ring needs at least 4 positions (closed: the last repeats the first)")
        for position in ring:
            _check_position(position, where)
        count += len(ring)
    if count > MAX_VERTICES:
        raise BadFeature(f"{where}: {count} vertices; at most {MAX_VERTICES}")
    polygon = shape(geometry)
    if not polygon.is_valid:
        raise BadFeature(f"{where}: invalid polygon: {explain_validity(polygon)}")
    if polygon.is_empty or polygon.area == 0:
        raise BadFeature(f"{where}: the polygon has no area")
    return Geofence(fence_id, name, kind, polygon=polygon)
