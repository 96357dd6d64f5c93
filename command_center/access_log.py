"""The access log, without secrets: the request's path and the names of its query parameters, never their
values.

aiohttp's default access log prints the whole request line, query string included, so a WebSocket ticket
(``?ticket=``) or a credential a client wrongly put in a URL (``?token=``) would land in the log in full.
Query values are left out rather than a list of known names redacted: a name nobody thought of (a
client's ``?access_token=``) must not leak either, and the names still tell what was asked.
Headers (``Authorization``) are never logged.

Which requests are logged is ``observability.access_log``: ``errors`` (the default: answers of 400 and above,
so a terminal does not scroll with every request), ``all``, or ``off``. Even with ``all``, a successful health
probe (``GET /api/health``, asked every few seconds by a proxy or orchestrator) or metrics scrape is not
logged: a line per probe buries the requests worth reading and costs the event loop a formatted write each
time. A failing one is logged like any other request. A WebSocket is one request, logged once when it closes.
With JSON logs (``command_center.logs``) the line's fields also travel as ``http``.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from command_center.keys import SETTINGS

#: Paths whose successful requests are not logged (health probes, metrics scrapes).
QUIET_PATHS = frozenset({"/api/health", "/metrics"})


def worth_logging(mode: str, path: str, status: int) -> bool:
    """Whether a request is logged under ``observability.access_log`` = ``mode``."""
    if mode == "off":
        return False
    if mode == "errors":
        return status >= 400
    return not (status == 200 and path in QUIET_PATHS)


def safe_target(request: web.BaseRequest) -> str:
    """``/path?name&other`` for ``/path?name=value&other=value``: what may be logged of the request target."""
    names = dict.fromkeys(name for name, _ in parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
    return request.path + ("?" + "&".join(names) if names else "")


class AccessLogger(AbstractAccessLogger):
    """One line per request: client, time, method, path (query values left out), status, size, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        mode = _mode(request)
        if not worth_logging(mode, request.path, response.status):
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        target = safe_target(request)
        http = {"remote": request.remote, "method": request.method, "target": target, "status": response.status,
                "bytes": response.body_length, "seconds": round(time, 4)}  # fmt: skip
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d %.3fs "%s"',
            request.remote,
            now,
            request.method,
            target,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
            extra={"http": http},
        )


def _mode(request: web.BaseRequest) -> str:
    """The app's ``observability.access_log``; ``errors`` for a request aiohttp refused before routing (an
    unparsable head, TLS on the plain port), which reached no app: ``request.app`` asserts on such a request
    (and fails otherwise under ``python -O``), which would put a traceback in the log for every one of them."""
    try:
        app = request.app  # type: ignore[attr-defined]  # a BaseRequest (no application) has none
    except (AttributeError, AssertionError):
        return "errors"
    return str(app[SETTINGS].observability.access_log)
