"""The web pages: static files served by the app itself (no CDN, no build step at run time).

Pages and their scripts carry no data; everything they show comes from the authenticated API.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_ROOT = Path(__file__).parent / "web"


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


def install_pages(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_static("/static/", WEB_ROOT, show_index=False, follow_symlinks=False)
