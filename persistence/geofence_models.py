"""A stored geofence (电子围栏): its court, what it is, when it raises an alarm, and its shape as GeoJSON."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.ids import CourtId, UserId


class AlarmOn(StrEnum):
    ENTER = "enter"  # e.g. a no-go zone
    EXIT = "exit"  # e.g. a court's jurisdiction, an escort's corridor
    BOTH = "both"
    NONE = "none"  # events only (a debtor's property: arrivals show on the timeline, no alarm)


@dataclass(frozen=True, slots=True)
class StoredGeofence:
    id: str
    court_id: CourtId
    name: str
    kind: str  # maps.geofences.FenceKind
    alarm_on: AlarmOn
    geometry: dict[str, Any]  # GeoJSON geometry: Polygon, MultiPolygon, or Point (a circle with radius_m)
    radius_m: float | None
    created_by: UserId
    created_ms: int
