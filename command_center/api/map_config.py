"""What a map page needs to draw its base layer, and the tiles of the court's archive when it has one.

Three base layers, first found wins: a raster MBTiles archive served by this app (``maps.tile_archive``:
street level with no tile server), a court's tile server (``maps.tile_url``), or the district outlines shipped
with the app. ``maps.tile_datum`` tells the pages whether the tiles are in GCJ-02 (web/lib/datum.js shifts).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.registry import Registry, json_response
from command_center.auth import PEOPLE
from command_center.keys import SETTINGS, TILE_ARCHIVE
from core.errors import NotFound

api = Registry()

#: District outlines shipped with the app (served from the app itself), drawn when no tiles are configured.
OFFLINE_BASEMAP_URL = "/static/basemap/districts.geojson"
#: Where the pages fetch the archive's tiles (with the session token: see web/lib/map.js).
ARCHIVE_TILE_URL = "/api/map/tiles/{z}/{x}/{y}"
#: Tiles are cached by the browser for a day: an archive changes when the court replaces the file.
TILE_CACHE = "private, max-age=86400"


class MapConfigOut(BaseModel):
    tile_url: str | None = Field(description="the court's tile server, template {z}/{x}/{y}")
    tile_archive_url: str | None = Field(description="tiles of the archive this app serves (bearer token)")
    tile_attribution: str
    datum: str = Field(description="datum of the tiles: wgs84 or gcj02 (positions are WGS-84)")
    min_zoom: int
    max_native_zoom: int | None = Field(description="deepest zoom the archive holds; beyond, tiles are scaled")
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
    archive = request.app.get(TILE_ARCHIVE)
    tiles = archive is not None or bool(maps.tile_url)
    return json_response(
        MapConfigOut(
            tile_url=None if archive is not None else (maps.tile_url or None),
            tile_archive_url=ARCHIVE_TILE_URL if archive is not None else None,
            tile_attribution=maps.tile_attribution or (archive.info.attribution if archive is not None else ""),
            datum=maps.tile_datum,
            min_zoom=archive.info.min_zoom if archive is not None else 0,
            max_native_zoom=archive.info.max_zoom if archive is not None else None,
            basemap_url=None if tiles else OFFLINE_BASEMAP_URL,
            center=(maps.center_lat, maps.center_lon),
            zoom=maps.zoom,
        )
    )


@api.route(
    "GET",
    "/api/map/tiles/{z}/{x}/{y}",
    summary="A tile of the court's map archive (XYZ numbering); 404 where the archive has none",
    tag="maps",
    access=PEOPLE,
    errors=(NotFound,),
)
async def archive_tile(request: web.Request) -> web.StreamResponse:
    archive = request.app.get(TILE_ARCHIVE)
    if archive is None:
        raise NotFound("no tile archive is configured (maps.tile_archive)")
    try:
        z, x, y = (int(request.match_info[k]) for k in ("z", "x", "y"))
    except ValueError:
        raise NotFound("tile coordinates are whole numbers") from None
    data = await archive.tile(z, x, y)
    if data is None:
        raise NotFound(f"the archive has no tile {z}/{x}/{y}")
    return web.Response(body=data, content_type=archive.info.media_type, headers={"Cache-Control": TILE_CACHE})
