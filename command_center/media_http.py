"""The HTTP around WHIP (RFC 9725) and WHEP: CORS for configured origins, request rates, ICE-server links.

Kept apart from the route handlers (``command_center.api.media``) so each rule is stated once: which
origins may call from a browser page elsewhere (none unless configured, and then only those), how many
POST/PATCH/DELETE a caller may send a minute (across processes when they share Redis), and which STUN/TURN
servers each answer names.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from command_center.keys import SETTINGS
from config.settings import MediaSettings
from core.errors import TooManyRequests
from media.ice_servers import link_headers, turn_credential

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MEDIA_PATHS = ("/api/whip", "/api/whep", "/api/talk")
#: What a page elsewhere may read of our answers (the session URL, its ETag, ICE servers, when to retry).
EXPOSED = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After, Media-Not-Forwarded"
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match"


class MediaRateGuard(Protocol):
    """POST/PATCH/DELETE per caller per minute: in this process (``MediaRates``), or shared by every process on
    one Redis (``shared_throttle.RedisMediaRates``), so a caller spreading requests over processes gets no more."""

    async def check(self, who: str) -> None:
        """Count one request of ``who``; ``TooManyRequests`` (429 with Retry-After) past the limit."""

    async def close(self) -> None: ...


def too_many(per_minute: int, who: str, retry_after: float) -> TooManyRequests:
    return TooManyRequests(f"more than {per_minute} media requests a minute from {who}; slow down",
                           retry_after=max(1.0, retry_after))  # fmt: skip


class MediaRates:
    """POST/PATCH/DELETE per caller per minute, in this process (a moving window: no burst at a boundary)."""

    def __init__(self, per_minute: int) -> None:
        self._limit = RateLimitItemPerMinute(per_minute)
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def check(self, who: str) -> None:
        if self._limiter.hit(self._limit, who):
            return
        reset, _remaining = self._limiter.get_window_stats(self._limit, who)
        raise too_many(self._limit.amount, who, reset - time.time())

    async def close(self) -> None:
        self._storage.reset()


MEDIA_RATES: web.AppKey[MediaRateGuard] = web.AppKey("media_rates")


def allowed_origin(request: web.Request) -> str | None:
    """The request's Origin if the settings allow it to use WHIP/WHEP from a browser, else None."""
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in request.app[SETTINGS].media.cors_origins else None


@web.middleware
async def media_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS (Fetch standard) on the media routes, for configured origins only; errors included, so a page
    elsewhere can read why it was refused. Any other origin gets no CORS header: its browser blocks it."""
    response = await handler(request)
    if request.path.startswith(MEDIA_PATHS) and (origin := allowed_origin(request)) is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        response.headers.add("Vary", "Origin")
    return response


def preflight(request: web.Request, methods: str, *, accept_post: bool) -> web.Response:
    """Answer OPTIONS (RFC 9110 §9.3.7; RFC 9725 §4.2): what the resource allows and takes, and the CORS
    preflight's answer for an allowed origin (no credential is needed to ask)."""
    headers = {"Allow": methods}
    if accept_post:
        headers["Accept-Post"] = SDP  # W3C LDP's header, as RFC 9725 asks
    else:
        headers["Accept-Patch"] = SDPFRAG  # RFC 5789 §3.1
    if allowed_origin(request) is not None:
        headers["Access-Control-Allow-Methods"] = methods
        headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = "600"
    return web.Response(status=204, headers=headers)


def ice_server_links(settings: MediaSettings, who: str) -> list[str]:
    """``Link`` values for the configured STUN/TURN servers, TURN ones with a fresh time-limited credential."""
    credential = None
    if settings.turn_secret:
        credential = turn_credential(settings.turn_secret, who, time.time(), settings.turn_credential_seconds)
    return link_headers(settings.ice_servers, credential)
