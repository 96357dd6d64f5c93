"""The access log, without secrets: the request's path and the names of its query parameters, never their
values.

aiohttp's default access log prints the whole request line, query string included, so a WebSocket ticket
(``?ticket=``) or a credential a client wrongly put in a URL (``?token=``) would land in the log in full.
Query values are left out rather than a list of known names redacted: a name nobody thought of (a
client's ``?access_token=``) must not leak either, and the names still tell what was asked.
Headers (``Authorization``) are never logged.

A successful health probe (``GET /api/health``, which a proxy or orchestrator asks every few seconds) is not
logged: a line per probe buries the requests worth reading and costs the event loop a formatted write each
time. A failing probe is logged like any other request.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

#: Paths whose successful requests are not logged (health probes).
QUIET_PATHS = frozenset({"/api/health"})


def safe_target(request: web.BaseRequest) -> str:
    """``/path?name&other`` for ``/path?name=value&other=value``: what may be logged of the request target."""
    names = dict.fromkeys(name for name, _ in parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
    return request.path + ("?" + "&".join(names) if names else "")


class AccessLogger(AbstractAccessLogger):
    """One line per request: client, time, method, path (query values left out), status, size, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if response.status == 200 and request.path in QUIET_PATHS:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d %.3fs "%s"',
            request.remote,
            now,
            request.method,
            safe_target(request),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
        )
