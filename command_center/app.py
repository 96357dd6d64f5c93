"""The app factory: settings become an aiohttp application (routes, pages, middleware); what it runs is wired in
``command_center.composition``."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from command_center.api.registry import Registry, openapi_document
from command_center.api.routes import all_endpoints
from command_center.composition import components
from command_center.keys import OPENAPI, SETTINGS
from command_center.logs import quiet_unparsable_requests
from command_center.media_http import media_cors
from command_center.middleware import (
    body_in_time,
    errors_as_json,
    no_nul_in_target,
    same_origin_websockets,
    security_headers,
)
from command_center.pages import install_pages
from config.settings import Settings
from query_control.agencies import AgencyConfig

API_TITLE = "执行指挥中心 Enforcement Command Centre API"


@functools.cache
def _openapi() -> dict[str, Any]:
    """The OpenAPI document, built once per process: the routes are fixed at import, and building it (pydantic's
    JSON schemas of every model) costs about 50 ms of CPU, which every app a process creates paid again (each
    test's app, each cluster node). Only ever read (served as JSON), never changed."""
    return openapi_document(Registry(all_endpoints()), title=API_TITLE, version="1")


def create_app(
    settings: Settings, *, store_schema: str | None = None, agencies: list[AgencyConfig] | None = None
) -> web.Application:
    """Build the application; nothing connects until it starts (``composition.components`` owns every resource).

    ``store_schema`` places PostgreSQL tables in a schema of their own (used by tests); ``agencies``
    replaces the configured partner agencies (tests point them at simulators on ephemeral ports).
    """
    app = web.Application(
        middlewares=[
            security_headers(settings.maps.tile_url),
            media_cors,
            errors_as_json,
            no_nul_in_target,
            same_origin_websockets,
            body_in_time,
        ],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    quiet_unparsable_requests()  # a client's garbage is one line in the log, not a traceback
    Registry(all_endpoints()).install(app)
    app[OPENAPI] = _openapi()
    install_pages(app)

    app.cleanup_ctx.append(components(settings, store_schema=store_schema, agencies=agencies))
    return app
