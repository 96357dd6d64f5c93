"""Edge middleware: every failure becomes the JSON error body; every response gets security headers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from command_center.keys import SETTINGS
from core.errors import (
    AppError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from persistence.availability import store_unavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: AppError) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="command-centre"'} if error.status == 401 else None
    if error.retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(error.retry_after)}
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


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
