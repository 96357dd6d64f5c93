"""The web pages: static files served by the app itself (no CDN, no build step at run time).

Pages and their scripts carry no data; everything they show comes from the authenticated API. Leaflet is
installed from the npm registry by the setup command and served from ``node_modules``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).parent / "web"
LEAFLET = Path(__file__).resolve().parent.parent / "node_modules" / "leaflet" / "dist"

PAGES = {
    "/": "index.html",
    "/wall": "wall.html",
    "/desk": "desk.html",
    "/replay": "replay.html",
    "/console": "console.html",
    "/entrustments": "entrust.html",
    "/rooms": "rooms.html",
    "/field": "field.html",
    "/ops": "ops.html",
}
BASEMAP = "basemap/districts.geojson"  # command_center.api.map_config names its URL


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_ROOT / name)

    return serve


def install_pages(app: web.Application) -> None:
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get(f"/static/{BASEMAP}", _basemap)
    app.router.add_static("/static/", WEB_ROOT, show_index=False, follow_symlinks=False)
    if LEAFLET.is_dir():
        app.router.add_static("/vendor/leaflet/", LEAFLET, show_index=False, follow_symlinks=False)
    else:
        log.error("map pages: %s is missing; run scripts/setup.sh (npm ci) to install Leaflet", LEAFLET)
        app.router.add_get("/vendor/leaflet/{name:.*}", _leaflet_missing)


async def _basemap(request: web.Request) -> web.StreamResponse:
    # RFC 7946's media type: aiohttp's table does not know .geojson, and nosniff is on.
    return web.FileResponse(WEB_ROOT / BASEMAP, headers={"Content-Type": "application/geo+json"})


async def _leaflet_missing(request: web.Request) -> web.StreamResponse:
    """Say why the map pages are blank instead of a bare 404 (node_modules is installed by setup, not shipped)."""
    return web.Response(
        status=404,
        text=f"Leaflet is not installed ({LEAFLET} is missing): run scripts/setup.sh, which runs npm ci.\n",
    )
