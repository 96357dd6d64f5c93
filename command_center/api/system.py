"""Health and the API description."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.registry import Registry, json_response
from command_center.api.schemas import HealthOut
from command_center.auth import PEOPLE, Access
from command_center.keys import BUS, OPENAPI, STORE

log = logging.getLogger(__name__)

api = Registry()

_PROBE_TIMEOUT = 2.0
HEALTH_READERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})


async def _probe(name: str, check: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await asyncio.wait_for(check(), _PROBE_TIMEOUT)
        return {"ok": True, **result}
    except Exception as exc:  # a health probe reports any failure instead of raising it
        log.warning("health: %s unreachable: %s", name, exc)
        return {"ok": False, "error": type(exc).__name__}


class HealthStatusOut(BaseModel):
    status: str = Field(description="ok, or degraded when a dependency is down (then HTTP 503)")


async def _health(request: web.Request) -> HealthOut:
    store, bus = await asyncio.gather(
        _probe("store", request.app[STORE].health), _probe("bus", request.app[BUS].health)
    )
    return HealthOut(status="ok" if store["ok"] and bus["ok"] else "degraded", store=store, bus=bus)


@api.route(
    "GET",
    "/api/health",
    summary="Liveness: ok or degraded, nothing more (details: /api/health/details)",
    tag="system",
    access=None,
    response=HealthStatusOut,
)
async def health(request: web.Request) -> web.StreamResponse:
    """Load balancers and anyone on the network may ask; versions and applied migrations tell an attacker
    what to try, so they are for the centre's staff only."""
    out = await _health(request)
    return json_response(HealthStatusOut(status=out.status), status=200 if out.status == "ok" else 503)


@api.route(
    "GET",
    "/api/health/details",
    summary="Dependency status with versions and migrations (the centre's staff)",
    tag="system",
    access=HEALTH_READERS,
    response=HealthOut,
)
async def health_details(request: web.Request) -> web.StreamResponse:
    out = await _health(request)
    return json_response(out, status=200 if out.status == "ok" else 503)


@api.route(
    "GET",
    "/api/openapi.json",
    summary="This API as an OpenAPI 3.1 document",
    tag="system",
    access=PEOPLE | {Access.DEVICE},
)
async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])
