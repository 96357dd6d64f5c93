"""Dispatch: the nearest available units to a place (an address's coordinates or a clicked spot), by
great-circle distance, with an ETA at ``tracking.dispatch_speed_mps``. Available means on duty and free:
online, not in SOS, not already en route or on site (``?any=true`` lists every unit with a position)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from command_center.api.params import bounded_int, flag
from command_center.api.registry import Registry, json_response
from command_center.auth import Access, current_user
from command_center.keys import SETTINGS, STORE, TRACKER
from core.errors import ValidationFailed
from core.ids import UnitId
from courts.visibility import visible_courts
from maps.nearest import nearest_units
from persistence.models import Status

api = Registry()


class NearestOut(BaseModel):
    lat: float
    lon: float
    units: list[dict[str, Any]]


def _coordinate(request: web.Request, name: str, low: float, high: float) -> float:
    raw = request.query.get(name)
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValidationFailed(f"{name} must be a number from {low:g} to {high:g}, got {raw!r}")
    return value


@api.route("GET", "/api/dispatch/nearest", summary="Nearest available units to ?lat=&lon= (&limit=, &any=true)",
           tag="maps", access=frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN}),
           response=NearestOut)  # fmt: skip
async def nearest(request: web.Request) -> web.StreamResponse:
    lat = _coordinate(request, "lat", -90, 90)
    lon = _coordinate(request, "lon", -180, 180)
    limit = bounded_int(request, "limit", default=5, low=1, high=100)
    everyone = flag(request, "any")
    store, tracker = request.app[STORE], request.app[TRACKER]
    candidates: list[tuple[str, float, float]] = []
    units = await store.list_units(await visible_courts(store, current_user(request)))
    latest = await tracker.positions([u.id for u in units])  # wherever each unit reports
    for unit in units:
        position = latest.get(unit.id)
        if position is None or unit.revoked_at is not None:
            continue
        if everyone or tracker.state(unit.id).status is Status.AVAILABLE:
            candidates.append((unit.id, position.lat, position.lon))
    speed = request.app[SETTINGS].tracking.dispatch_speed_mps
    found = nearest_units(lat, lon, candidates, limit=limit, speed_mps=speed)
    views = [tracker.view(UnitId(c.unit_id)) | {"distance_m": round(c.distance_m, 1), "eta_s": round(c.eta_s, 1)}
             for c in found]  # fmt: skip
    return json_response(NearestOut(lat=lat, lon=lon, units=views))
