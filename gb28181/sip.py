"""SIP messages (RFC 3261 §7) as GB/T 28181 devices send them: parse, build, serialise. No I/O.

Untrusted input: ``parse`` raises only ``SipParseError``, carrying the status to answer (400 malformed,
413 too large); sizes are bounded before anything is decoded. Header names are case-insensitive and the
compact forms (RFC 3261 §7.3.3) are expanded, so ``v:`` and ``Via:`` are the same header.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_HEADERS = 64
MAX_LINE = 2048
SIP_VERSION = "SIP/2.0"

COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
}
#: How headers are spelt when we write them (devices compare some case-sensitively).
CANONICAL = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "contact": "Contact",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
    "max-forwards": "Max-Forwards",
    "expires": "Expires",
    "www-authenticate": "WWW-Authenticate",
    "authorization": "Authorization",
    "user-agent": "User-Agent",
    "event": "Event",
    "subscription-state": "Subscription-State",
    "retry-after": "Retry-After",
    "date": "Date",
}
REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    481: "Call/Transaction Does Not Exist",
    488: "Not Acceptable Here",
    489: "Bad Event",
    500: "Server Internal Error",
    503: "Service Unavailable",
}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) (.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_CSEQ = re.compile(r"^\s*(\d{1,10})\s+([A-Za-z]+)\s*$")
_URI_USER = re.compile(r"sips?:([^@;>\s]+)@", re.IGNORECASE)
_TAG = re.compile(r";\s*tag=([^;>\s]+)", re.IGNORECASE)


class SipParseError(Exception):
    """Input that is not a SIP message we accept; ``status`` is what to answer (when an answer is possible)."""

    def __init__(self, status: int, reason: str, partial: SipMessage | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        #: The message's start line and headers when they were readable, so the refusal can be answered.
        self.partial = partial


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set); headers keep their order and repeats."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, value)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def set(self, name: str, value: str) -> None:
        name = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        match = _CSEQ.match(self.get("cseq") or "")
        if match is None:
            return 0, ""
        return int(match.group(1)), match.group(2).upper()

    @property
    def from_user(self) -> str | None:
        """The user part of the From URI: a GB device's 20-digit id."""
        return uri_user(self.get("from") or "")

    def serialise(self) -> bytes:
        start = (
            f"{self.method} {self.uri} {SIP_VERSION}" if self.method else f"{SIP_VERSION} {self.status} {self.reason}"
        )
        lines = [start]
        for name, value in self.headers:
            if name != "content-length":
                lines.append(f"{CANONICAL.get(name, name.title())}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def uri_user(value: str) -> str | None:
    match = _URI_USER.search(value)
    return match.group(1) if match else None


def tag_of(value: str) -> str | None:
    match = _TAG.search(value)
    return match.group(1) if match else None


def new_tag() -> str:
    return secrets.token_hex(8)


def parse(data: bytes, *, max_bytes: int) -> SipMessage:
    """One complete SIP message (a UDP datagram, or one framed off a TCP stream)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = data.partition(b"\n\n")  # bare LF line ends: tolerated, as most stacks do
        if not sep:
            raise SipParseError(400, "no blank line after the headers")
    if len(head) > max_bytes:
        raise SipParseError(413, f"headers of {len(head)} bytes; the limit is {max_bytes}")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("gb18030", errors="replace")  # a device name in a display name, from an old device
    lines = text.replace("\r\n", "\n").split("\n")
    msg = _start_line(lines[0])
    for line in _unfold(lines[1:]):
        if len(line) > MAX_LINE:
            raise SipParseError(400, f"a header line is longer than {MAX_LINE} characters")
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(400, f"malformed header line {line[:60]!r}")
        msg.headers.append((COMPACT.get(name, name), value.strip()))
        if len(msg.headers) > MAX_HEADERS:
            raise SipParseError(400, f"more than {MAX_HEADERS} headers")
    for required in ("via", "from", "to", "call-id", "cseq"):
        if msg.get(required) is None:
            raise SipParseError(400, f"missing {CANONICAL[required]} header")
    _number, method = msg.cseq
    if not method:
        raise SipParseError(400, f"malformed CSeq {msg.get('cseq')!r}")
    if msg.is_request and method != msg.method.upper():
        raise SipParseError(400, f"CSeq method {method} differs from the request method {msg.method}", msg)
    if len(data) > max_bytes:
        raise SipParseError(413, f"message of {len(data)} bytes; the limit is {max_bytes}", msg)
    length_text = msg.get("content-length")
    if length_text is None:
        msg.body = rest
    else:
        if not length_text.isdigit() or len(length_text) > 9:
            raise SipParseError(400, f"malformed Content-Length {length_text!r}", msg)
        length = int(length_text)
        if length > len(rest):
            raise SipParseError(400, f"Content-Length {length} but only {len(rest)} body bytes", msg)
        msg.body = rest[:length]
    return msg


def _start_line(line: str) -> SipMessage:
    if len(line) > MAX_LINE:
        raise SipParseError(400, "start line too long")
    if match := _STATUS_LINE.match(line):
        return SipMessage(status=int(match.group(1)), reason=match.group(2))
    if match := _REQUEST_LINE.match(line):
        return SipMessage(method=match.group(1).upper(), uri=match.group(2))
    raise SipParseError(400, f"malformed start line {line[:60]!r}")


def _unfold(lines: Iterable[str]) -> list[str]:
    """Header lines with continuation lines (leading white space) joined to the line they continue."""
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and out:
            out[-1] += " " + line.strip()
        elif line:
            out.append(line)
    return out


def response(
    request: SipMessage,
    status: int,
    *,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    to_tag: str | None = None,
) -> SipMessage:
    """The answer to ``request`` (RFC 3261 §8.2.6): its Via, From, Call-ID, CSeq; To with our tag."""
    reply = SipMessage(status=status, reason=REASONS.get(status, "Unknown"))
    for name in ("via", "from", "to", "call-id", "cseq"):
        for value in request.get_all(name):
            if name == "to" and tag_of(value) is None and status > 100:
                value = f"{value};tag={to_tag or new_tag()}"
            reply.headers.append((name, value))
    reply.headers.extend((name.lower(), value) for name, value in extra)
    reply.body = body
    return reply


class StreamFramer:
    """Cuts SIP messages off a TCP byte stream by Content-Length (required on streams, RFC 3261 §18.3).

    The buffer is bounded by ``max_bytes``: a peer that sends more without completing a message gets a
    ``SipParseError`` (413) and the connection is closed by the caller.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 §3.5.1)
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._max:
                    raise SipParseError(413, f"headers longer than {self._max} bytes")
                return out
            head = self._buffer[:end].decode("latin-1")
            match = re.search(r"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*$", head)
            if match is None:
                raise SipParseError(400, "no Content-Length on a stream transport")
            total = end + 4 + int(match.group(1))
            if total > self._max:
                raise SipParseError(413, f"message of {total} bytes; the limit is {self._max}")
            if len(self._buffer) < total:
                return out
            out.append(self._buffer[:total])
            self._buffer = self._buffer[total:]
