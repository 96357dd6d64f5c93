"""Trickled candidates and ICE restarts on a live aiortc peer connection (RFC 8838, RFC 8445 §9).

aiortc 1.16 takes trickled candidates (``addIceCandidate``) but cannot restart ICE: it has no renegotiation
of ICE credentials. The server is always the ICE-controlled side (WHIP and WHEP clients offer), and
aioice's controlled agent follows whatever pair the controlling client nominates, even after it completed.
So a restart here only has to hand the connection fresh local credentials and the client's new ones: the
client's checks with the new credentials then succeed, it nominates the pair it can reach (a new address
after a 4G handover), and DTLS and SRTP carry on over the same transport objects, keys and sessions.

Every aioice internal used is named here (``_local_username``, ``_local_password``, ``_remote_candidates_end``)
and ``check_internals`` says when a release moved one, as ``media.passthrough`` does for aiortc's.
"""

from __future__ import annotations

from dataclasses import dataclass

import aioice
from aioice.utils import random_string
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import RTCIceTransport, candidate_from_aioice
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from core.errors import ServiceUnavailable, ValidationFailed

_INTERNALS = ("_local_username", "_local_password", "_remote_candidates_end")


@dataclass(frozen=True, slots=True)
class LocalIce:
    """The server's side after a restart: what the client must use now."""

    kind: str
    mid: str
    ufrag: str
    pwd: str
    candidates: tuple[str, ...]


def check_internals() -> list[str]:
    """What this aioice lacks of what a restart uses (empty: all there)."""
    probe = aioice.Connection(ice_controlling=False)
    return [f"aioice.Connection.{name} is gone" for name in _INTERNALS if not hasattr(probe, name)]


def remote_ufrag(pc: RTCPeerConnection) -> str | None:
    """The client's current ICE username fragment."""
    transport = _transport(pc)
    return None if transport is None else transport._connection.remote_username


async def add_candidates(pc: RTCPeerConnection, candidates: tuple[str, ...], end: bool) -> None:
    """Trickled candidates of the client, added to the one bundled transport (any ``a=mid`` named them)."""
    mid = _first_mid(pc)
    try:
        for text in candidates:
            candidate = candidate_from_sdp(text)
            candidate.sdpMid = mid
            await pc.addIceCandidate(candidate)
        if end:
            await pc.addIceCandidate(None)
    except ValueError as exc:  # e.g. after end-of-candidates (RFC 8838 §13)
        raise ValidationFailed(f"candidate refused: {exc}") from None


async def restart(pc: RTCPeerConnection, ufrag: str, pwd: str, candidates: tuple[str, ...], end: bool) -> LocalIce:
    """Restart ICE with the client's new credentials; returns the server's new ones and its candidates."""
    transport = _transport(pc)
    if transport is None or check_internals():
        raise ServiceUnavailable("ICE restart is not available on this session", retry_after=5)
    connection = transport._connection
    connection._local_username = random_string(4)
    connection._local_password = random_string(22)
    connection.remote_username = ufrag
    connection.remote_password = pwd
    connection._remote_candidates_end = False  # the client's candidates of the new generation may follow
    await add_candidates(pc, candidates, end)
    sdp = tuple(candidate_to_sdp(candidate_from_aioice(c)) for c in connection.local_candidates)
    transceivers = pc.getTransceivers()
    kind = transceivers[0].kind if transceivers else "application"
    return LocalIce(kind, _first_mid(pc), connection.local_username, connection.local_password, sdp)


def _transport(pc: RTCPeerConnection) -> RTCIceTransport | None:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            return dtls.transport
    sctp = pc.sctp
    return None if sctp is None else sctp.transport.transport


def _first_mid(pc: RTCPeerConnection) -> str:
    for transceiver in pc.getTransceivers():
        if transceiver.mid is not None:
            return transceiver.mid
    return "0"
