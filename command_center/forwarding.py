"""Media requests for a unit whose session lives in another server process are sent on to that process.

A unit's WebRTC session (its peer connection, its viewers, its talkback) lives in the one process that
answered its WHIP offer; behind a proxy, a viewer's WHEP request may reach any process. That process finds
the holder of the unit's media lease and forwards the request, with the caller's own credentials, to the
holder's direct address; the holder authenticates, authorises and audits it as usual and its answer
(SDP with its own ICE candidates) goes back unchanged, so the media then flows between the viewer and the
unit's process. A forwarded request is never forwarded again.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from cluster.port import media_lease
from command_center.keys import CLUSTER, HTTP_CLIENT, MEDIA
from core.errors import ServiceUnavailable
from core.ids import UnitId

log = logging.getLogger(__name__)

FORWARDED_BY = "X-CC-Forwarded-By"
PASSED_ON = ("Authorization", "Content-Type", "Accept", "Accept-Language", "If-Match")
PASSED_BACK = ("Content-Type", "Location", "ETag", "Accept-Patch", "Retry-After")  # Link: below, each one
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=20)


async def on_unit_node(request: web.Request, unit_id: UnitId, body: bytes = b"") -> web.Response | None:
    """The holder's answer if the unit's media session lives in another process; None to handle it here."""
    cluster = request.app[CLUSTER]
    if not cluster.shared or request.headers.get(FORWARDED_BY) or request.app[MEDIA].publisher(unit_id) is not None:
        return None
    try:
        node = await cluster.holder(media_lease(unit_id))
        url = None if node is None or node == cluster.node_id else await cluster.node_url(node)
    except Exception as exc:  # Redis is away: answer from this process (a unit streaming here still works)
        log.warning("media: cannot look up where unit %s streams (%s); answering here", unit_id, exc)
        return None
    if url is None:  # not streaming elsewhere, or its process died and the lease lapses shortly
        return None
    headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
    headers[FORWARDED_BY] = cluster.node_id
    try:
        async with request.app[HTTP_CLIENT].request(
            request.method, url + request.rel_url.path_qs, data=body, headers=headers, timeout=FORWARD_TIMEOUT
        ) as answer:
            payload = await answer.read()
            passed = CIMultiDict((name, answer.headers[name]) for name in PASSED_BACK if name in answer.headers)
            for link in answer.headers.getall("Link", []):
                passed.add("Link", link)
            return web.Response(status=answer.status, body=payload, headers=passed)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("media: forwarding %s %s to %s failed: %s", request.method, request.path, node, exc)
        raise ServiceUnavailable(f"the server process holding unit {unit_id}'s stream does not answer") from None
