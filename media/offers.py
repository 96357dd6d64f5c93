"""Inspect an SDP offer (RFC 8866, as used by WebRTC: RFC 8829) before any peer connection exists.

Pure: text in, values out. It turns away what cannot work with a precise reason (so no half-made
``RTCPeerConnection`` is ever left behind for garbage), chooses one codec per media kind for a unit's
stream, checks that a viewer accepts that codec, and applies the answerer's DTLS role choice
(``prefer_dtls_server``). It reads only what those decisions need; aiortc parses the whole offer later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: What the command centre forwards: units' video in VP8 or H.264, audio in Opus (mime type names as in SDP).
SUPPORTED: Mapping[str, tuple[str, ...]] = {"video": ("VP8", "H264"), "audio": ("opus",)}
MEDIA_KINDS = ("audio", "video")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_SECTIONS = 16
MAX_LINES = 4_000
MAX_LINE = 4_096

_LINE = re.compile(r"^[a-z]=")
_MEDIA = re.compile(r"^m=(\S+) (\d+)(?:/\d+)? (\S+)(?: (.*))?$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d{1,3}) ([A-Za-z0-9_.-]+)/(\d+)(?:/\d+)?$")
_FMTP = re.compile(r"^a=fmtp:(\d{1,3}) (.*)$")


class OfferError(ValueError):
    """The offer cannot be used; ``malformed`` tells unreadable text (400) from an unusable offer (422)."""

    def __init__(self, message: str, *, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


def _malformed(message: str) -> OfferError:
    return OfferError(message, malformed=True)


def _unusable(message: str) -> OfferError:
    return OfferError(message, malformed=False)


@dataclass(frozen=True, slots=True)
class Codec:
    payload_type: int
    name: str  # as written in a=rtpmap, e.g. "VP8", "H264", "opus"
    clock_rate: int
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Section:
    """One ``m=`` section."""

    kind: str  # audio, video, application, or anything else the offer named
    port: int
    protocol: str
    mid: str | None
    direction: str
    codecs: tuple[Codec, ...]
    bundle_only: bool = False  # RFC 8843 §6: port 0 yet in use, on the transport of the BUNDLE group
    # Transport attributes (RFC 8839 ICE, RFC 8842 DTLS), the section's own or else the session's.
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprints: tuple[tuple[str, str], ...] = ()  # (hash function, lower case; value)
    setup: str | None = None

    @property
    def active(self) -> bool:
        """Not rejected: a port, or port 0 with ``a=bundle-only`` (GStreamer's webrtcbin offers that)."""
        return self.port != 0 or self.bundle_only

    @property
    def sends(self) -> bool:
        """The offerer sends media in this section."""
        return self.active and self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        """The offerer wants to receive media in this section."""
        return self.active and self.direction in ("sendrecv", "recvonly")


@dataclass(frozen=True, slots=True)
class Offer:
    sections: tuple[Section, ...]

    @property
    def media(self) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.kind in MEDIA_KINDS)


def parse_offer(text: str) -> Offer:
    """Read the parts of an offer the decisions below need; ``OfferError(malformed=True)`` otherwise."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0] != "v=0":
        raise _malformed("not an SDP offer: the first line must be 'v=0'")
    if len(lines) > MAX_LINES:
        raise _malformed(f"SDP has {len(lines)} lines; limit {MAX_LINES}")
    session_direction = "sendrecv"
    session_transport: dict[str, object] = {"ice_ufrag": None, "ice_pwd": None, "fingerprints": [], "setup": None}
    raw: list[dict[str, object]] = []
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE or not _LINE.match(line) or any(ord(c) < 32 and c != "\t" for c in line):
            raise _malformed(f"SDP line {number} is not '<letter>=<value>'")
        if line.startswith("m="):
            match = _MEDIA.match(line)
            if match is None:
                raise _malformed(f"SDP line {number}: malformed media line")
            if len(raw) == MAX_SECTIONS:
                raise _unusable(f"more than {MAX_SECTIONS} media sections")
            kind, port, protocol, _formats = match.groups()
            raw.append({"kind": kind, "port": int(port), "protocol": protocol, "mid": None,
                        "direction": None, "rtpmap": {}, "fmtp": {}, "bundle_only": False,
                        "ice_ufrag": None, "ice_pwd": None, "fingerprints": [], "setup": None})  # fmt: skip
            continue
        if not line.startswith("a="):
            continue
        attribute = line[2:]
        section = raw[-1] if raw else None
        if attribute in DIRECTIONS:
            if section is None:
                session_direction = attribute
            else:
                section["direction"] = attribute
        elif attribute.startswith(_TRANSPORT):
            _transport(section if section is not None else session_transport, attribute, number)
        elif section is None:
            continue
        elif attribute.startswith("mid:"):
            section["mid"] = attribute[4:]
        elif attribute == "bundle-only":
            section["bundle_only"] = True
        elif attribute.startswith("rtpmap:"):
            rtpmap = _RTPMAP.match(line)
            if rtpmap is None:
                raise _malformed(f"SDP line {number}: malformed rtpmap")
            pt, name, clock = rtpmap.groups()
            _rtpmap(section)[int(pt)] = (name, int(clock))
        elif attribute.startswith("fmtp:"):
            fmtp = _FMTP.match(line)
            if fmtp is None:
                raise _malformed(f"SDP line {number}: malformed fmtp")
            _fmtp(section)[int(fmtp.group(1))] = _parameters(fmtp.group(2))
    sections = []
    for section in raw:
        fmtps = _fmtp(section)
        codecs = tuple(Codec(pt, name, clock, fmtps.get(pt, {})) for pt, (name, clock) in _rtpmap(section).items())
        direction = section["direction"] or session_direction
        fingerprints = _fingerprints(section) or _fingerprints(session_transport)
        ufrag, pwd, setup = (_text(section, key) or _text(session_transport, key) for key in ("ice_ufrag", "ice_pwd",
                                                                                               "setup"))  # fmt: skip
        sections.append(
            Section(str(section["kind"]), int(str(section["port"])), str(section["protocol"]),
                    None if section["mid"] is None else str(section["mid"]), str(direction), codecs,
                    bool(section["bundle_only"]), ufrag, pwd, tuple(fingerprints), setup)
        )  # fmt: skip
    return Offer(tuple(sections))


def _rtpmap(section: dict[str, object]) -> dict[int, tuple[str, int]]:
    value = section["rtpmap"]
    assert isinstance(value, dict)
    return value


def _fmtp(section: dict[str, object]) -> dict[int, dict[str, str]]:
    value = section["fmtp"]
    assert isinstance(value, dict)
    return value


_TRANSPORT = ("ice-ufrag:", "ice-pwd:", "fingerprint:", "setup:")
_FINGERPRINT = re.compile(r"^([A-Za-z0-9-]{1,16}) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63})$")


def _transport(target: dict[str, object], attribute: str, number: int) -> None:
    """Record an ICE or DTLS attribute of a section (or of the session, which every section inherits)."""
    name, _, value = attribute.partition(":")
    if name == "fingerprint":
        match = _FINGERPRINT.match(value)
        if match is None:
            raise _malformed(f"SDP line {number}: malformed fingerprint (want '<hash> <hex:hex:...>', RFC 8122)")
        _fingerprints(target).append((match.group(1).lower(), match.group(2)))
    else:
        target[name.replace("-", "_")] = value


def _fingerprints(section: dict[str, object]) -> list[tuple[str, str]]:
    value = section["fingerprints"]
    assert isinstance(value, list)
    return value


def _text(section: dict[str, object], key: str) -> str | None:
    value = section[key]
    return None if value is None else str(value)


def _parameters(text: str) -> dict[str, str]:
    parameters = {}
    for item in text.split(";"):
        key, sep, value = item.strip().partition("=")
        if key:
            parameters[key.lower()] = value.strip() if sep else ""
    return parameters


#: Fingerprint hash functions aiortc verifies a peer's certificate with (others are ignored by it).
FINGERPRINT_HASHES = ("sha-256", "sha-384", "sha-512")
SETUP_ROLES = ("actpass", "active", "passive")  # RFC 8842 §5.1: holdconn cannot carry media
_ICE_CHAR = re.compile(r"^[A-Za-z0-9+/]+$")  # RFC 8839 §5.4 ice-char


def check_transport(offer: Offer) -> None:
    """Every section the peer connection will use can be connected and encrypted (WebRTC: RFC 8827 §6.5).

    aiortc accepts an offer without a DTLS fingerprint or ICE credentials and only fails (an
    ``AssertionError`` in a background task) after the answer has gone out: such an offer would be
    answered 201 and replace a unit's working session for nothing. A section that shares the BUNDLE
    transport (``a=bundle-only``) needs only its DTLS role; a rejected section (port 0) nothing.
    """
    for section in offer.sections:
        if not section.active:
            continue
        name = f"the {section.kind} section" + (f" (mid {section.mid})" if section.mid is not None else "")
        if section.kind in MEDIA_KINDS and "TLS" not in section.protocol.upper().split("/"):
            raise _unusable(f"{name} uses {section.protocol}, not DTLS-SRTP (UDP/TLS/RTP/SAVPF)")
        if section.setup is None:
            raise _unusable(f"{name} has no a=setup (the DTLS role, RFC 8842)")
        if section.setup not in SETUP_ROLES:
            raise _unusable(f"{name}: a=setup:{section.setup} cannot carry media; use actpass, active or passive")
        if section.bundle_only:
            continue
        if not section.fingerprints:
            raise _unusable(f"{name} has no DTLS fingerprint (a=fingerprint): media must be encrypted (RFC 8827)")
        if not any(algorithm in FINGERPRINT_HASHES for algorithm, _ in section.fingerprints):
            used = ", ".join(sorted({algorithm for algorithm, _ in section.fingerprints}))
            raise _unusable(f"{name}: fingerprint hash {used} not supported; use {', '.join(FINGERPRINT_HASHES)}")
        if section.ice_ufrag is None or section.ice_pwd is None:
            raise _unusable(f"{name} has no ICE credentials (a=ice-ufrag and a=ice-pwd, RFC 8839)")
        if not 4 <= len(section.ice_ufrag) <= 256 or not _ICE_CHAR.match(section.ice_ufrag):
            raise _unusable(f"{name}: a=ice-ufrag must be 4 to 256 ice-chars (RFC 8839 §5.4)")
        if not 22 <= len(section.ice_pwd) <= 256 or not _ICE_CHAR.match(section.ice_pwd):
            raise _unusable(f"{name}: a=ice-pwd must be 22 to 256 ice-chars (RFC 8839 §5.4)")


def forwardable(kind: str, codec: Codec) -> bool:
    """The command centre can carry this codec without transcoding, and aiortc can packetise it."""
    name = codec.name.lower()
    if kind == "video" and name == "vp8":
        return codec.clock_rate == 90_000
    if kind == "video" and name == "h264":
        # aiortc offers packetization-mode 1 with the (constrained) baseline profile, profile_idc 0x42.
        profile = codec.parameters.get("profile-level-id", "42e01f").lower()
        return codec.clock_rate == 90_000 and codec.parameters.get("packetization-mode") == "1" and profile[:2] == "42"
    if kind == "audio" and name == "opus":
        return codec.clock_rate == 48_000
    return False


#: Audio a viewer is sent though no unit may publish it over WHIP: G.711 from GB/T 28181 devices, forwarded
#: as the device sent it (aiortc and browsers all take PCMA and PCMU, RFC 7874 §3).
VIEW_ONLY: Mapping[str, tuple[str, ...]] = {"audio": ("PCMA", "PCMU")}
#: What units send (GB/T 28181 devices) that WebRTC has no payload format for: recorded, never forwarded live.
NOT_FORWARDED = {"audio/AAC": "WebRTC has no AAC; it is recorded as evidence, not played live"}


def viewable(kind: str, codec: Codec) -> bool:
    """A viewer accepting ``codec`` can be sent a unit's media in it as it came."""
    if forwardable(kind, codec):
        return True
    names = [name.lower() for name in VIEW_ONLY.get(kind, ())]
    return codec.name.lower() in names and codec.clock_rate == 8_000


def not_forwarded(media: Mapping[str, str]) -> dict[str, str]:
    """The unit's media (kind → mime type) no viewer gets, with the reason: AAC audio."""
    return {kind: f"{mime}: {NOT_FORWARDED[mime]}" for kind, mime in media.items() if mime in NOT_FORWARDED}


def mime_type(kind: str, codec: Codec) -> str:
    """``video/VP8``, ``video/H264``, ``audio/opus``: the spelling aiortc's capabilities use."""
    for name in (*SUPPORTED.get(kind, ()), *VIEW_ONLY.get(kind, ())):
        if name.lower() == codec.name.lower():
            return f"{kind}/{name}"
    return f"{kind}/{codec.name}"


def plan_publish(offer: Offer) -> dict[str, str]:
    """A unit's WHIP offer: the codec (mime type) chosen for each kind it sends, the first it lists
    that can be forwarded.

    Every audio and video section must send, and offer a forwardable codec: a section the answer
    would have to reject is refused whole, with the reason, rather than half-accepted.
    """
    media = offer.media
    if not media:
        raise _unusable("the offer has no audio or video section")
    plan: dict[str, str] = {}
    for section in media:
        if section.kind in plan:
            raise _unusable(f"more than one {section.kind} section; send one camera and one microphone")
        if not section.sends:
            raise _unusable(f"the {section.kind} section does not send media (direction {section.direction})")
        codec = next((c for c in section.codecs if forwardable(section.kind, c)), None)
        if codec is None:
            offered = ", ".join(sorted({c.name for c in section.codecs if c.name.lower() != "rtx"})) or "none"
            wanted = " or ".join(_spelled(section.kind))
            raise _unusable(f"no supported {section.kind} codec offered ({offered}); send {wanted}")
        plan[section.kind] = mime_type(section.kind, codec)
    return plan


def plan_view(offer: Offer, available: Mapping[str, str]) -> dict[str, str]:
    """A viewer's WHEP offer against what the unit sends (kind → mime type): the kinds the viewer gets.

    The viewer must accept the unit's very codec (nothing is transcoded). Sections of a kind the unit
    does not send, or sends in a codec WebRTC cannot carry (``not_forwarded``: AAC), are answered inactive by
    the WebRTC stack.
    """
    media = offer.media
    if not media:
        raise _unusable("the offer has no audio or video section")
    plan: dict[str, str] = {}
    for section in media:
        if section.kind in plan:
            raise _unusable(f"more than one {section.kind} section")
        mime = available.get(section.kind)
        if mime is None or mime in NOT_FORWARDED or not section.receives:
            continue
        if not any(viewable(section.kind, c) and mime_type(section.kind, c) == mime for c in section.codecs):
            raise _unusable(f"the unit sends {mime}, which the {section.kind} section does not accept")
        plan[section.kind] = mime
    if not plan:
        sent = ", ".join(sorted(available.values())) or "nothing"
        raise _unusable(f"the offer receives none of the unit's media ({sent})")
    return plan


def plan_talk(offer: Offer, wanted: str = "audio/opus") -> str:
    """An operator's talkback offer: one audio section that sends the unit's talkback codec (``wanted``: Opus,
    or PCMA for a GB/T 28181 device); the mime type to forward."""
    audio = [section for section in offer.media if section.kind == "audio"]
    if len(audio) != 1:
        raise _unusable("a talkback offer has exactly one audio section (the operator's microphone)")
    if not audio[0].sends:
        raise _unusable(f"the audio section does not send (direction {audio[0].direction})")
    codec = next((c for c in audio[0].codecs if viewable("audio", c) and mime_type("audio", c) == wanted), None)
    if codec is None:
        name = "Opus" if wanted == "audio/opus" else wanted.split("/")[1]
        raise _unusable(f"talkback is forwarded as {name}; the offer's audio section has no {name}")
    return mime_type("audio", codec)


def talks_back(offer: Offer) -> bool:
    """Whether a unit's offer can play audio from the centre (its audio section is sendrecv)."""
    return any(section.kind == "audio" and section.receives for section in offer.media)


def _spelled(kind: str) -> list[str]:
    return [{"H264": "H.264", "opus": "Opus"}.get(name, name) for name in SUPPORTED[kind]]


def prefer_dtls_server(sdp: str) -> str:
    """Make the answerer the DTLS server: read the offer's ``a=setup:actpass`` as ``active``.

    RFC 8842 §5.3 lets the answerer of an ``actpass`` offer pick either role; answering ``passive``
    makes the client (GStreamer with RSA certificates, browsers) choose the cipher suites, which aiortc
    as DTLS client cannot always match. aiortc picks ``active`` itself, so the offer is read as if
    the offerer had asked to be the client.
    """
    return re.sub(r"(?m)^a=setup:actpass(\r?)$", r"a=setup:active\1", sdp)


def rtcp_mux_only(answer: str) -> str:
    """Mark every bundled RTP section of an answer ``a=rtcp-mux-only`` (RFC 8858; RFC 9725 §4.5 has WHIP
    and WHEP use BUNDLE with RTP and RTCP on one port). aiortc multiplexes always but only says ``rtcp-mux``."""
    if not re.search(r"(?m)^a=group:BUNDLE ", answer):
        return answer
    return re.sub(r"(?m)^a=rtcp-mux(\r?)$", r"a=rtcp-mux\1\na=rtcp-mux-only\1", answer)
