"""The SDP of a GB/T 28181 live-video INVITE (GB/T 28181-2016 §9.2, Annex F) and of the device's answer. Pure.

The platform offers to receive MPEG-PS (``a=rtpmap:96 PS/90000``, ``a=recvonly``) on one RTP port, with the
SSRC it expects in the GB-specific ``y=`` line: ten decimal digits, 0 for live video, then digits 4–8 of
the SIP domain, then a 4-digit sequence. The device answers with where it sends from (``c=``/``m=``) and
may repeat or change ``y=``; either SSRC is accepted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class SdpError(ValueError):
    pass


def live_ssrc(domain: str, sequence: int) -> str:
    """The ``y=`` value of a live stream: '0' + the domain's digits 4–8 + a 4-digit sequence."""
    return f"0{domain[3:8]}{sequence % 10_000:04d}"


def invite_offer(channel_id: str, media_address: str, port: int, ssrc: str, *, tcp: bool = False) -> bytes:
    """The INVITE's SDP; ``tcp``: RTP over TCP with RFC 4571 framing to our listening port (RFC 4145
    ``a=setup:passive``: the device connects)."""
    media = f"m=video {port} TCP/RTP/AVP 96" if tcp else f"m=video {port} RTP/AVP 96"
    lines = [
        "v=0",
        f"o={channel_id} 0 0 IN IP4 {media_address}",
        "s=Play",
        f"c=IN IP4 {media_address}",
        "t=0 0",
        media,
        "a=recvonly",
        *(["a=setup:passive", "a=connection:new"] if tcp else []),
        "a=rtpmap:96 PS/90000",
        f"y={ssrc}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class Answer:
    address: str  # where the device says it sends from (c=)
    port: int  # its RTP port (m=); 0 when it did not say
    ssrc: int | None  # its y= line, as the RTP SSRC value
    transport: str  # "RTP/AVP" (UDP) or "TCP/RTP/AVP"


def parse_answer(body: bytes) -> Answer:
    """The device's 200 OK SDP; ``SdpError`` when it has no video section or no address."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="replace")
    address = ""
    port = -1
    transport = ""
    ssrc: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("c=") and (address == "" or port >= 0):
            parts = line[2:].split()
            if len(parts) == 3 and parts[1] == "IP4":
                address = parts[2]
        elif line.startswith("m=video"):
            parts = line.split()
            if len(parts) < 3 or not parts[1].isdigit():
                raise SdpError(f"malformed media line {line[:60]!r}")
            port, transport = int(parts[1]), parts[2]
        elif line.startswith("y="):
            value = line[2:].strip()
            if value.isdigit() and len(value) <= 10:
                ssrc = int(value)
    if port < 0:
        raise SdpError("the answer has no video section")
    if not address:
        raise SdpError("the answer has no connection address")
    return Answer(address, port, ssrc, transport)


PCMA_PAYLOAD = 8  # RFC 3551 static payload type of G.711 A-law


@dataclass(frozen=True, slots=True)
class AudioOffer:
    """A device's INVITE for broadcast audio (GB/T 28181-2016 §9.12): where it wants the platform's RTP."""

    address: str
    port: int
    payload_type: int
    ssrc: int | None  # its y= line: the SSRC to send with


def check_media_address(address: str, device_address: str) -> None:
    """``SdpError`` unless ``address`` (an offer's ``c=``) is the IP literal ``device_address`` (see below)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"the connection address {address[:60]!r} is not an IP address") from None
    if ip.is_multicast or ip.is_unspecified:
        raise SdpError(f"the connection address {address} is not a device's own address")
    try:
        device = ipaddress.ip_address(device_address)
    except ValueError:
        device = None
    if ip.is_loopback and ip != device:
        raise SdpError(f"the connection address {address} is loopback")
    if ip != device:
        raise SdpError(f"the connection address {address} is not the device's ({device_address})")


def parse_audio_offer(body: bytes, device_address: str) -> AudioOffer:
    """The device's audio offer; ``SdpError`` unless it takes G.711A (PCMA, payload 8) over RTP/UDP, the one
    form sent here (PS-wrapped audio and RTP over TCP are not), at ``device_address``, the IP the device
    registered from: the operator's voice goes to the device and nowhere else. ``c=`` must be an IP literal (a
    hostname would be looked up, blocking, on every 20 ms packet), never multicast or unspecified, and loopback
    only for a device that itself signals from that loopback address (one on this host)."""
    text = body.decode("utf-8", errors="replace")
    address, port, formats, transport, ssrc = "", -1, [], "", None
    names: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("c=") and port < 0:
            parts = line[2:].split()
            if len(parts) == 3 and parts[1] == "IP4":
                address = parts[2]
        elif line.startswith("m=audio"):
            parts = line.split()
            if len(parts) < 4 or not parts[1].isdigit():
                raise SdpError(f"malformed media line {line[:60]!r}")
            port, transport = int(parts[1]), parts[2]
            formats = [int(f) for f in parts[3:] if f.isdigit()]
        elif line.startswith("a=rtpmap:"):
            number, _, name = line[9:].partition(" ")
            if number.isdigit():
                names[int(number)] = name.split("/")[0].upper()
        elif line.startswith("y="):
            value = line[2:].strip()
            if value.isdigit() and len(value) <= 10:
                ssrc = int(value)
    if port <= 0:
        raise SdpError("the offer has no audio section")
    if not address:
        raise SdpError("the offer has no connection address")
    check_media_address(address, device_address)
    if transport.upper() != "RTP/AVP":
        raise SdpError(f"audio over {transport} is not sent here; offer RTP/AVP")
    pcma = [f for f in formats if names.get(f, "PCMA" if f == PCMA_PAYLOAD else "") == "PCMA"]
    if not pcma:
        raise SdpError("the offer does not take PCMA (G.711A), the talkback codec")
    return AudioOffer(address, port, pcma[0], ssrc)


def audio_answer(platform_id: str, address: str, port: int, offer: AudioOffer) -> bytes:
    """The platform's 200 OK SDP for a broadcast: it sends PCMA from ``address``:``port`` with the device's y=."""
    lines = [
        "v=0",
        f"o={platform_id} 0 0 IN IP4 {address}",
        "s=Play",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {offer.payload_type}",
        "a=sendonly",
        f"a=rtpmap:{offer.payload_type} PCMA/8000",
        *([f"y={offer.ssrc:010d}"] if offer.ssrc is not None else []),
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
