"""Trickle ICE and ICE restart over HTTP PATCH (RFC 9725 §4.3, RFC 8840 ``application/trickle-ice-sdpfrag``).

Pure: text in, values out. A PATCH carries an SDP fragment with ICE candidates (trickle: 204) or new ICE
credentials (a restart: 200 with the server's new credentials and candidates, and a new entity-tag). The
request must name the session's current entity-tag in ``If-Match`` (or ``*``): none is 428 Precondition
Required, another is 412 Precondition Failed (RFC 9110 §13.1.1, strong comparison).

Only ``a=ice-ufrag``, ``a=ice-pwd``, ``a=mid``, ``a=candidate`` and ``a=end-of-candidates`` are read: some
clients send stray lines beside them (GStreamer's whip-client an ``m=audio`` next to ``a=mid:video0``), and
with BUNDLE every candidate belongs to the one transport anyway.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import AppError, BadRequest, ValidationFailed

MEDIA_TYPE = "application/trickle-ice-sdpfrag"
MAX_BYTES = 16 * 1024
MAX_CANDIDATES = 64
MAX_LINE = 1024

# RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"; ufrag 4-256 characters, password 22-256.
_UFRAG = re.compile(r"^[A-Za-z0-9+/]{4,256}$")
_PWD = re.compile(r"^[A-Za-z0-9+/]{22,256}$")
# RFC 8839 §5.1: foundation component transport priority address port "typ" type [extensions]
_CANDIDATE = re.compile(r"^[A-Za-z0-9+/]{1,32} \d{1,3} [A-Za-z]{3,10} \d{1,10} \S{1,255} \d{1,5} typ [a-z]{4,5}( .*)?$")


class PreconditionRequired(AppError):
    """RFC 6585 §3: a PATCH without ``If-Match``."""

    status = 428
    code = "precondition_required"


class PreconditionFailed(AppError):
    """RFC 9110 §15.5.13: ``If-Match`` names an entity-tag the session no longer has."""

    status = 412
    code = "precondition_failed"


@dataclass(frozen=True, slots=True)
class Fragment:
    ufrag: str | None
    pwd: str | None
    candidates: tuple[str, ...]  # each the value after ``a=candidate:``
    end: bool  # a=end-of-candidates

    def restarts(self, current_ufrag: str | None) -> bool:
        """New ICE credentials: the client asks for an ICE restart (RFC 8839 §4.4.1.1.1)."""
        return self.ufrag is not None and self.ufrag != current_ufrag


def new_etag() -> str:
    """A strong entity-tag for a session's ICE state (it changes on every restart)."""
    return f'"{secrets.token_urlsafe(12)}"'


def check_if_match(header: str | None, etag: str) -> None:
    """428 without ``If-Match``, 412 unless it lists the session's entity-tag or is ``*``."""
    if header is None or not header.strip():
        raise PreconditionRequired("a PATCH must carry If-Match with the session's ETag (RFC 9725 §4.3.1)")
    tags = [tag.strip() for tag in header.split(",")]
    if "*" in tags or etag in tags:  # W/ tags never match: If-Match compares strongly
        return
    raise PreconditionFailed("If-Match does not name the session's current ETag; it changed with an ICE restart")


def parse_fragment(body: bytes) -> Fragment:
    """Read a trickle-ice-sdpfrag body: 400 for unreadable text, 422 for values that cannot be ICE's."""
    if len(body) > MAX_BYTES:
        raise BadRequest(f"SDP fragment larger than {MAX_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("SDP fragment is not UTF-8 text") from None
    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[str] = []
    end = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) > MAX_LINE or len(line) < 3 or line[1] != "=" or any(ord(c) < 32 for c in line):
            raise BadRequest(f"SDP fragment line {number} is not '<letter>=<value>'")
        if line.startswith("a=ice-ufrag:"):
            ufrag = _checked(line.removeprefix("a=ice-ufrag:"), _UFRAG, "a=ice-ufrag", number)
        elif line.startswith("a=ice-pwd:"):
            pwd = _checked(line.removeprefix("a=ice-pwd:"), _PWD, "a=ice-pwd", number)
        elif line.startswith("a=candidate:"):
            candidates.append(_checked(line.removeprefix("a=candidate:"), _CANDIDATE, "a=candidate", number))
            if len(candidates) > MAX_CANDIDATES:
                raise ValidationFailed(f"more than {MAX_CANDIDATES} candidates in one fragment")
        elif line == "a=end-of-candidates":
            end = True
    if (ufrag is None) != (pwd is None):
        raise ValidationFailed("an ICE restart needs both a=ice-ufrag and a=ice-pwd")
    return Fragment(ufrag, pwd, tuple(candidates), end)


def restart_answer(kind: str, mid: str, ufrag: str, pwd: str, candidates: Sequence[str]) -> str:
    """The server's fragment answering a restart: its new credentials and every candidate (RFC 9725 §4.3.2)."""
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", f"m={kind} 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mid}"]
    lines += [f"a=candidate:{c}" for c in candidates] + ["a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"


def _checked(value: str, pattern: re.Pattern[str], what: str, number: int) -> str:
    if not pattern.match(value):
        raise ValidationFailed(f"SDP fragment line {number}: {what} value is not valid ({value[:40]!r})")
    return value
