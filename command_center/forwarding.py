"""Media requests for a unit or a room whose sessions live in another server process are sent on to it.

A unit's WebRTC session (its peer connection, its viewers, its talkback) lives in the one process that
answered its WHIP offer, and a consultation room's SFU (every participant's source and view) in the one
process that took the room's first publish, its media home; behind a proxy, a request may reach any
process. That process finds the holder of the unit's media lease (``media:<unit>``) or of the room's lease
(``room:<room>``) and forwards the request, with the caller's own credentials, to the holder's direct
address; the holder authenticates, authorises and audits it as usual and its answer (SDP with its own ICE
candidates) goes back unchanged, so the media then flows between the caller and the holding process. A
forwarded request is never forwarded again.

A forwarded request is handled where it arrives, so the hop is authenticated: the forwarding process signs
the method, path and query, the caller's credential, its node id, the time and a one-time nonce with the
secret every process shares (kept in the database, ``cluster_secret``). A request naming a forwarder without
a valid MAC no older or newer than ``HOP_SKEW_SECONDS`` is refused (403): else any client could make a
process that is not the room's home answer for the room (and publish a wrong room state), or end views there
that run on in the home. A signed hop is taken once: the receiving process remembers its nonce while the
hop is fresh, so a hop captured on the way (say, an ``end this view`` on the cluster's network) cannot be
sent again, nor with another credential.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from cluster.port import media_lease, room_lease
from command_center.keys import CLUSTER, HOP_NONCES, HOP_SECRET, HTTP_CLIENT, MEDIA
from core.errors import Forbidden, ServiceUnavailable
from core.ids import UnitId

log = logging.getLogger(__name__)

FORWARDED_BY = "X-CC-Forwarded-By"
FORWARDED_AT = "X-CC-Forwarded-At"  # unix seconds when the hop was signed
FORWARDED_MAC = "X-CC-Forwarded-MAC"  # hex HMAC-SHA256 (``hop_mac``)
FORWARDED_NONCE = "X-CC-Forwarded-Nonce"  # 128 random bits in hex, one per hop
HOP_SKEW_SECONDS = 30
PASSED_ON = ("Authorization", "Content-Type", "Accept", "Accept-Language", "If-Match")
PASSED_BACK = ("Content-Type", "Location", "ETag", "Accept-Patch", "Retry-After")  # Link: below, each one
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=20)


def hop_mac(secret: str, method: str, path_qs: str, node: str, at: str, nonce: str, authorization: str) -> str:
    """The MAC of one hop: what is asked (method, path and query), for whom (the caller's credential, which
    the receiving process checks as usual), by which process, when, and which hop (the nonce)."""
    credential = hashlib.sha256(authorization.encode()).hexdigest()  # the token itself is not in the message
    message = "\n".join((method.upper(), path_qs, node, at, nonce, credential)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def hop_headers(
    secret: str, method: str, path_qs: str, node: str, authorization: str = "", now: float | None = None
) -> dict[str, str]:
    """The headers that make a request a forwarded one, signed; ``authorization``: the caller's header as sent
    on (empty when it has none)."""
    at = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    mac = hop_mac(secret, method, path_qs, node, at, nonce, authorization)
    return {FORWARDED_BY: node, FORWARDED_AT: at, FORWARDED_NONCE: nonce, FORWARDED_MAC: mac}


class HopNonces:
    """The nonces of the signed hops this process took while they are fresh: a hop is taken once.

    Kept in memory: a hop is sent to one process, the holder it names, and a nonce older than the skew window
    is refused as stale anyway. ``limit`` bounds the memory against a peer that signs without end (only a
    process holding the cluster secret can): past it, hops are refused until old nonces expire."""

    def __init__(self, *, window_seconds: float = 2 * HOP_SKEW_SECONDS, limit: int = 100_000) -> None:
        self._window = window_seconds
        self._limit = limit
        self._seen: dict[str, float] = {}  # nonce → monotonic time it was taken (insertion order = age)

    def take(self, nonce: str) -> bool:
        """True the first time a nonce is seen within the window; False for a replay (or when full)."""
        now = time.monotonic()
        for old, at in list(self._seen.items()):
            if now - at <= self._window:
                break
            del self._seen[old]
        if nonce in self._seen or len(self._seen) >= self._limit:
            return False
        self._seen[nonce] = now
        return True


_TAKEN = web.RequestKey("forwarded_hop_taken", bool)


def forwarded(request: web.Request) -> bool:
    """Whether another process of the cluster forwarded this request (then it is handled here); 403 when it
    claims so without a valid, fresh MAC, or sends again a hop already taken (a replay). Asked several times
    about one request, it answers the same (the nonce is taken on the first)."""
    node = request.headers.get(FORWARDED_BY)
    if node is None:
        return False
    if request.get(_TAKEN):
        return True
    at, mac = request.headers.get(FORWARDED_AT, ""), request.headers.get(FORWARDED_MAC, "")
    nonce = request.headers.get(FORWARDED_NONCE, "")
    authorization = request.headers.get("Authorization", "")
    expected = hop_mac(request.app[HOP_SECRET], request.method, request.rel_url.path_qs, node, at, nonce,
                       authorization)  # fmt: skip
    fresh = at.isdigit() and abs(time.time() - int(at)) <= HOP_SKEW_SECONDS and len(nonce) == 32
    if not (fresh and hmac.compare_digest(mac.encode(), expected.encode())):
        log.warning("forwarding: %s %s claims to be forwarded by %r without a valid, fresh MAC; refused",
                    request.method, request.path, node[:64])  # fmt: skip
        raise Forbidden("this request claims to be forwarded by another server process, unsigned")
    if not request.app[HOP_NONCES].take(nonce):
        log.warning("forwarding: %s %s: a hop from %r sent again (nonce already taken); refused",
                    request.method, request.path, node[:64])  # fmt: skip
        raise Forbidden("this forwarded request was already handled; a hop is taken once")
    request[_TAKEN] = True
    return True


async def on_unit_node(request: web.Request, unit_id: UnitId, body: bytes = b"") -> web.Response | None:
    """The holder's answer if the unit's media session lives in another process; None to handle it here."""
    if request.app[MEDIA].publisher(unit_id) is not None:
        return None
    return await on_holder(request, media_lease(unit_id), body, f"unit {unit_id}'s stream")


async def on_room_home(
    request: web.Request, room_id: str, body: bytes = b"", *, claim: bool = False
) -> web.Response | None:
    """The home's answer if the room's media lives in another process; None to handle it here.

    ``claim`` (a publish): when no process is the room's home yet, this one takes the room's lease and
    becomes it; if another process took it first, the request goes there."""
    cluster = request.app[CLUSTER]
    lease = room_lease(room_id)
    if not cluster.shared or forwarded(request) or cluster.holds(lease):
        return None
    if claim:
        try:
            if await cluster.claim(lease):
                log.info("rooms: this process is now the media home of room %s", room_id)
                return None
        except Exception as exc:  # Redis is away: the room's media runs here (as a unit's does)
            log.warning("rooms: cannot take room %s's lease (%s); its media runs here", room_id, exc)
            return None
    return await on_holder(request, lease, body, f"room {room_id}'s media")


async def leave_room_home(request: web.Request, room_id: str) -> None:
    """The room closed: this process is its media home no more (the next publish may choose another)."""
    cluster = request.app[CLUSTER]
    if cluster.shared and cluster.holds(room_lease(room_id)):
        try:
            await cluster.release(room_lease(room_id))
        except Exception as exc:  # the lease lapses by itself
            log.warning("rooms: cannot release room %s's lease (%s); it lapses", room_id, exc)


async def on_holder(request: web.Request, lease: str, body: bytes, what: str) -> web.Response | None:
    """Forward the request to the process holding ``lease``; None when no other live process holds it."""
    cluster = request.app[CLUSTER]
    if not cluster.shared or forwarded(request):
        return None
    try:
        node = await cluster.holder(lease)
        url = None if node is None or node == cluster.node_id else await cluster.node_url(node)
    except Exception as exc:  # Redis is away: answer from this process (media held here still works)
        log.warning("media: cannot look up where %s lives (%s); answering here", what, exc)
        return None
    if url is None:  # held nowhere, or its process died and the lease lapses shortly
        return None
    headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
    headers |= hop_headers(request.app[HOP_SECRET], request.method, request.rel_url.path_qs, cluster.node_id,
                           request.headers.get("Authorization", ""))  # fmt: skip
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
        raise ServiceUnavailable(f"the server process holding {what} does not answer") from None
