"""Edge middleware: every failure becomes the JSON error body; every response gets security headers."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from command_center.keys import SETTINGS
from core.errors import (
    AppError,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)
from persistence.availability import store_unavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: AppError) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="command-centre"'} if error.status == 401 else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return web.json_response(error.body(), status=error.status, headers=headers, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map the exception tree to statuses in one place; never leak a traceback."""
    try:
        return await handler(request)
    except AppError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].server.max_body_bytes
        return error_response(PayloadTooLarge(f"body larger than the {limit}-byte limit"))
    except web.HTTPNotFound:
        return error_response(NotFound(f"no route for {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(MethodNotAllowed(f"{request.method} not allowed on {request.path}"))
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status)
    except Exception as exc:
        if store_unavailable(exc):
            log.warning("%s %s: the database is unavailable (%s)", request.method, request.path, exc)
            return error_response(ServiceUnavailable("the database is unavailable; try again shortly"))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(AppError("internal error; it has been logged"))


@web.middleware
async def body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body trickled in slowly must not hold a handler and its connection for ever (aiohttp waits as long
    as the client likes): it is read here, up to the size limit, within ``server.body_timeout_seconds``, or
    the request gets 408 and the connection is closed. Handlers then read it from memory."""
    if request.body_exists and request.headers.get("Upgrade", "").lower() != "websocket":
        limit = request.app[SETTINGS].server.body_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                await request.read()
        except TimeoutError:
            raise RequestTimeout(f"request body not received within {limit:g} s") from None
    return await handler(request)


@web.middleware
async def no_nul_in_target(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A NUL character (``%00``) in the path or a query value is refused here, before any handler: no id or
    value of this application holds one, PostgreSQL cannot store or compare one (its driver error was a
    500) and SQLite's JSON functions cut a text at one, so ``x%00y`` would match ``x`` in a list."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise BadRequest("the request target holds a NUL character (%00), which no name or value here may hold")
    return await handler(request)


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Pages load scripts, styles and tiles from this server only (court networks have no internet).
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
}


@web.middleware
async def same_origin_websockets(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser opening a socket names the page's origin: only this server's own pages may (a page elsewhere
    must not drive a console's socket). Units and tools send no Origin and are judged by their credential."""
    origin = request.headers.get("Origin")
    socket = request.headers.get("Upgrade", "").lower() == "websocket"
    if origin and socket and urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden(f"WebSocket from another origin ({origin}) refused")
    return await handler(request)


def security_headers(tile_url: str = "") -> Middleware:
    """The headers above on every response; a court's tile server (maps.tile_url, another host) is the one
    origin besides this server that pages may load images from, or its tiles would be refused by the CSP."""
    headers = dict(_SECURITY_HEADERS)
    origin = tile_origin(tile_url)
    if origin:
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "img-src 'self' data: blob:", f"img-src 'self' data: blob: {origin}"
        )

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return add_headers


def tile_origin(tile_url: str) -> str:
    """scheme://host[:port] of a tile URL template, or "" when it names no other host."""
    parts = urlsplit(tile_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
