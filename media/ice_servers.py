"""The STUN/TURN servers handed to a unit or a viewer with its answer, as ``Link`` headers (RFC 9725 §4.6).

Pure. TURN credentials are made per answer with coturn's REST scheme (``use-auth-secret``, the TURN REST
API draft): the username is ``<expiry unix time>:<who>`` and the password the base64 HMAC-SHA1 of that
username keyed with the shared secret, so coturn checks them without asking anyone and they lapse on their
own. They travel in a response header, never in a URL or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    password: str


def turn_credential(secret: str, who: str, now: float, lifetime_s: int) -> TurnCredential:
    """A credential coturn accepts until ``now + lifetime_s`` (``who``: the unit's or user's id, for its logs)."""
    username = f"{int(now) + lifetime_s}:{who}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode())


def link_headers(servers: Sequence[str], credential: TurnCredential | None) -> list[str]:
    """One ``Link`` value per server; TURN servers carry the credential, and are left out without one
    (RFC 9725 §4.6, RFC 8288 quoting)."""
    links = []
    for url in servers:
        link = f'<{url}>; rel="ice-server"'
        if url.startswith(("turn:", "turns:")):
            if credential is None:  # a TURN server without a credential would only make clients fail there
                continue
            link += (f'; username="{_quoted(credential.username)}"; credential="{_quoted(credential.password)}"'
                     '; credential-type="password"')  # fmt: skip
        links.append(link)
    return links


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
