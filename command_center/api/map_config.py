"""What a map page needs to draw its base layer: the court's tile server, or the offline basemap."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.registry import Registry, json_response
from command_center.auth import PEOPLE
from command_center.keys import SETTINGS

api = Registry()

#: District outlines shipped with the app (served from the app itself), drawn when no tile URL is set.
OFFLINE_BASEMAP_URL = "/static/basemap/districts.geojson"


class MapConfigOut(BaseModel):
    tile_url: str | None = Field(description="tile template {z}/{x}/{y}; null: draw the offline basemap")
    tile_attribution: str
    basemap_url: str | None = Field(description="GeoJSON outlines to draw when there are no tiles")
    center: tuple[float, float]
    zoom: int


@api.route(
    "GET",
    "/api/map/config",
    summary="Base layer and initial view of the map pages",
    tag="maps",
    access=PEOPLE,
    response=MapConfigOut,
)
async def map_config(request: web.Request) -> web.StreamResponse:
    maps = request.app[SETTINGS].maps
    return json_response(
        MapConfigOut(
            tile_url=maps.tile_url or None,
            tile_attribution=maps.tile_attribution,
            basemap_url=None if maps.tile_url else OFFLINE_BASEMAP_URL,
            center=(maps.center_lat, maps.center_lon),
            zoom=maps.zoom,
        )
    )
