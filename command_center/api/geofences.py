"""Geofences (电子围栏): drawn on the console map or imported as GeoJSON, listed for the map, removed.

Each is a GeoJSON Feature (a Polygon/MultiPolygon, or a Point with ``properties.radius_m`` for a circle)
with ``properties`` name, kind (jurisdiction, target, no_go), alarm_on (enter, exit, both, none; default by
kind: no_go → enter, jurisdiction → exit, target → none) and court_id (default: the caller's). Every
refusal names the feature and what is wrong; an import is all or nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import Strict
from command_center.auth import Access, UserCaller, current_user
from command_center.keys import BUS, CLUSTER, GEOFENCES, STORE
from core.errors import NotFound, ValidationFailed
from core.ids import CourtId
from courts.visibility import require_visible, visible_courts
from maps.geofences import FenceKind
from maps.geojson_input import BadFeature, fence_from_feature
from persistence.geofence_models import AlarmOn, StoredGeofence
from persistence.port import Store

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_IMPORT = 1000
DEFAULT_ALARM = {FenceKind.NO_GO: AlarmOn.ENTER, FenceKind.JURISDICTION: AlarmOn.EXIT, FenceKind.TARGET: AlarmOn.NONE}


class FeatureIn(Strict):
    type: str = Field(description="Feature")
    geometry: dict[str, Any]
    properties: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class CollectionIn(Strict):
    type: str = Field(description="FeatureCollection")
    features: list[dict[str, Any]] = Field(max_length=MAX_IMPORT)


class CollectionOut(BaseModel):
    type: str = "FeatureCollection"
    features: list[dict[str, Any]]


def feature_view(f: StoredGeofence) -> dict[str, Any]:
    props: dict[str, Any] = {"name": f.name, "kind": f.kind, "alarm_on": f.alarm_on.value, "court_id": f.court_id,
                             "created_ms": f.created_ms}  # fmt: skip
    if f.radius_m is not None:
        props["radius_m"] = f.radius_m
    return {"type": "Feature", "id": f.id, "geometry": f.geometry, "properties": props}


async def _checked(store: Store, caller: UserCaller, feature: dict[str, Any], where: str) -> StoredGeofence:
    fence_id = uuid.uuid4().hex
    try:
        fence = fence_from_feature(feature, fence_id, where=where)
    except BadFeature as exc:
        raise ValidationFailed(str(exc)) from None
    props = feature.get("properties") or {}
    try:
        alarm_on = AlarmOn(props["alarm_on"]) if "alarm_on" in props else DEFAULT_ALARM[fence.kind]
    except ValueError:
        raise ValidationFailed(f"{where}: alarm_on must be one of {[a.value for a in AlarmOn]}") from None
    court_id = CourtId(str(props.get("court_id") or caller.user.court_id))
    await store.get_court(court_id)
    await require_visible(store, caller, court_id)
    return StoredGeofence(fence_id, court_id, fence.name, fence.kind.value, alarm_on, feature["geometry"],
                          fence.radius_m, caller.user.id, int(time.time() * 1000))  # fmt: skip


async def _add(request: web.Request, fences: list[StoredGeofence]) -> web.StreamResponse:
    await request.app[STORE].add_geofences(fences)
    await request.app[GEOFENCES].changed(request.app[BUS], request.app[CLUSTER].node_id)
    return json_response(CollectionOut(features=[feature_view(f) for f in fences]), status=201)


@api.route("POST", "/api/geofences", summary="Create a geofence from a GeoJSON Feature", tag="maps",
           access=COMMANDERS, body=FeatureIn, response=CollectionOut, status=201, errors=(NotFound,))  # fmt: skip
async def create_geofence(request: web.Request) -> web.StreamResponse:
    data = body(request, FeatureIn)
    fence = await _checked(request.app[STORE], current_user(request), data.model_dump(), "feature")
    return await _add(request, [fence])


@api.route("POST", "/api/geofences/import", summary="Import a GeoJSON FeatureCollection (all or nothing)",
           tag="maps", access=COMMANDERS, body=CollectionIn, response=CollectionOut, status=201,
           errors=(NotFound,))  # fmt: skip
async def import_geofences(request: web.Request) -> web.StreamResponse:
    data = body(request, CollectionIn)
    if data.type != "FeatureCollection":
        raise ValidationFailed(f"expected a FeatureCollection, got {data.type!r}")
    store, caller = request.app[STORE], current_user(request)
    fences, problems = [], []
    for index, feature in enumerate(data.features):
        try:
            fences.append(await _checked(store, caller, feature, f"features[{index}]"))
        except ValidationFailed as exc:
            problems.append(exc.message)
    if problems:
        raise ValidationFailed(f"nothing imported; {len(problems)} of {len(data.features)} features refused: "
                               + "; ".join(problems[:20]))  # fmt: skip
    if not fences:
        raise ValidationFailed("the collection has no features")
    return await _add(request, fences)


@api.route("GET", "/api/geofences", summary="Geofences of the caller's courts (a GeoJSON FeatureCollection)",
           tag="maps", access=COMMANDERS, response=CollectionOut)  # fmt: skip
async def list_geofences(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    fences = await store.list_geofences(await visible_courts(store, current_user(request)))
    return json_response(CollectionOut(features=[feature_view(f) for f in fences]))


@api.route("DELETE", "/api/geofences/{fence_id}", summary="Remove a geofence", tag="maps", access=COMMANDERS,
           status=204, errors=(NotFound,))  # fmt: skip
async def delete_geofence(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    fence = await store.get_geofence(request.match_info["fence_id"])
    await require_visible(store, current_user(request), fence.court_id)
    await store.delete_geofence(fence.id)
    await request.app[GEOFENCES].changed(request.app[BUS], request.app[CLUSTER].node_id)
    return web.Response(status=204)
