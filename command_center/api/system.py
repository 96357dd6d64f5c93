"""Health and the API description."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from command_center.api.registry import Registry, json_response
from command_center.api.schemas import HealthOut
from command_center.auth import PEOPLE, Access
from command_center.keys import BUS, OPENAPI, STORE

log = logging.getLogger(__name__)

api = Registry()

_PROBE_TIMEOUT = 2.0


async def _probe(name: str, check: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await asyncio.wait_for(check(), _PROBE_TIMEOUT)
        return {"ok": True, **result}
    except Exception as exc:  # a health probe reports any failure instead of raising it
        log.warning("health: %s unreachable: %s", name, exc)
        return {"ok": False, "error": type(exc).__name__}


@api.route(
    "GET",
    "/api/health",
    summary="Liveness and dependency status",
    tag="system",
    access=None,
    response=HealthOut,
)
async def health(request: web.Request) -> web.StreamResponse:
    store, bus = await asyncio.gather(
        _probe("store", request.app[STORE].health), _probe("bus", request.app[BUS].health)
    )
    ok = store["ok"] and bus["ok"]
    out = HealthOut(status="ok" if ok else "degraded", store=store, bus=bus)
    return json_response(out, status=200 if ok else 503)


@api.route(
    "GET",
    "/api/openapi.json",
    summary="This API as an OpenAPI 3.1 document",
    tag="system",
    access=PEOPLE | {Access.DEVICE},
)
async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])
