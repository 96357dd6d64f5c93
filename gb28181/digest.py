"""HTTP Digest for SIP REGISTER (RFC 2617 / RFC 3261 §22.4) with MD5, the algorithm GB/T 28181 devices use.

The store keeps HA1 = MD5(device id:realm:password), not the password: HA1 is all a verifier needs, and a
database copy does not reveal the password itself (it does let one register as that device in this realm,
like any Digest credential). Nonces are stateless: the issue time and an HMAC over it and the client's
address with a per-process key, so nothing is stored per challenge, a nonce older than its lifetime is
refused as stale, and a captured Authorization does not work from another address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16  # about 95 bits: out of reach of guessing even through the unsalted MD5 of HA1


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def ha1(username: str, realm: str, password: str) -> str:
    return md5_hex(f"{username}:{realm}:{password}")


def new_password() -> str:
    """A SIP password for a device: letters and digits only, since devices are configured by hand."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def parse_credentials(header: str) -> dict[str, str] | None:
    """The parameters of ``Digest k=v, …``; None when the header is not a Digest header."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            return None
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
        position = match.end()
    return params


class Nonces:
    """Issue and check stateless nonces: hex of the issue second and an HMAC of it (digits and a-f only,
    since some devices copy the nonce into fixed-size buffers)."""

    def __init__(self, ttl_seconds: float, key: bytes | None = None) -> None:
        self._ttl = ttl_seconds
        self._key = key or secrets.token_bytes(32)

    def issue(self, now: float, client: str) -> str:
        stamp = f"{int(now):x}"
        return stamp + self._mac(stamp, client)

    def check(self, nonce: str, now: float, client: str) -> str:
        """'ok', 'stale' (ours, for this client, but expired) or 'bad' (not ours, or issued to another address)."""
        stamp, mac = nonce[:-16], nonce[-16:]
        if not stamp or len(stamp) > 12 or not hmac.compare_digest(mac, self._mac(stamp, client)):
            return "bad"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        return "ok" if 0 <= now - issued <= self._ttl else "stale"

    def _mac(self, stamp: str, client: str) -> str:
        return hmac.new(self._key, f"{stamp} {client}".encode(), hashlib.sha256).hexdigest()[:16]


def challenge(realm: str, nonce: str, *, stale: bool = False) -> str:
    """The WWW-Authenticate value of a 401."""
    extra = ", stale=TRUE" if stale else ""
    return f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, qop="auth"{extra}'


def expected_response(params: dict[str, str], *, method: str, stored_ha1: str) -> str:
    ha2 = md5_hex(f"{method}:{params.get('uri', '')}")
    nonce = params.get("nonce", "")
    qop = params.get("qop")
    if qop:
        return md5_hex(f"{stored_ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:{qop}:{ha2}")
    return md5_hex(f"{stored_ha1}:{nonce}:{ha2}")  # RFC 2069 style, still sent by older devices


def verify(params: dict[str, str], *, method: str, stored_ha1: str) -> bool:
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm != "MD5" or params.get("qop", "auth") != "auth":
        return False
    given = params.get("response", "").lower()
    return hmac.compare_digest(given, expected_response(params, method=method, stored_ha1=stored_ha1))
