"""The unit's side of an ICE restart (RFC 9725 §4.3.2) when its network changes (4G handover, Wi-Fi ↔ 4G):
the same WHIP session carries on over the new address, so the recording and the viewers never notice.

aiortc cannot restart ICE, so this works on its aioice connection (the unit is the ICE-controlling side, as
the offerer): ``begin`` binds the new address and makes the PATCH fragment with new credentials and the new
candidate; ``finish`` takes the server's answer, checks the new path with aggressive nomination, and drops
the old socket once the new path carries the media. The HTTP exchange is the caller's (``MediaUnit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aioice import Candidate, Connection
from aioice.ice import CandidatePair, StunProtocol
from aioice.utils import random_string
from aiortc import RTCPeerConnection

MEDIA_TYPE = "application/trickle-ice-sdpfrag"


class RestartFailed(ConnectionError):
    """The server's answer was unusable or the new path did not check out (the old path is kept)."""


@dataclass
class Restart:
    """A restart under way: the fragment to PATCH, and what ``finish`` needs."""

    fragment: str
    connection: Connection
    moved: StunProtocol
    ufrag: str
    pwd: str


def ice_connection(pc: RTCPeerConnection) -> Connection:
    """The aioice connection under the peer connection's one bundled transport."""
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.transport is not None:
            return transceiver.receiver.transport.transport._connection
    if pc.sctp is None:
        raise RestartFailed("the peer connection has no transport")
    return pc.sctp.transport.transport._connection


async def begin(pc: RTCPeerConnection, address: str) -> Restart:
    """Bind the unit's new address and make the restart's fragment (new ufrag and password, its candidate)."""
    connection = ice_connection(pc)
    candidates = await connection.get_component_candidates(1, [address])
    if not candidates:
        raise RestartFailed(f"cannot bind {address}")
    moved = connection._protocols[-1]
    ufrag, pwd = random_string(4), random_string(22)
    mid = next((t.mid for t in pc.getTransceivers() if t.mid is not None), "0")
    fragment = (f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{mid}\r\n"
                f"a=candidate:{candidates[0].to_sdp()}\r\na=end-of-candidates\r\n")  # fmt: skip
    return Restart(fragment, connection, moved, ufrag, pwd)


async def finish(restart: Restart, answer: str) -> None:
    """Apply the server's new credentials, check and nominate the new path, then drop the old socket."""
    lines = answer.splitlines()
    try:
        server_ufrag = next(line.split(":", 1)[1] for line in lines if line.startswith("a=ice-ufrag:"))
        server_pwd = next(line.split(":", 1)[1] for line in lines if line.startswith("a=ice-pwd:"))
        remote = [Candidate.from_sdp(line.split(":", 1)[1]) for line in lines if line.startswith("a=candidate:")]
    except (StopIteration, ValueError) as exc:
        raise RestartFailed(f"unusable restart answer: {exc}") from None
    connection = restart.connection
    old = connection._nominated.get(1)
    connection._local_username, connection._local_password = restart.ufrag, restart.pwd
    connection.remote_username, connection.remote_password = server_ufrag, server_pwd
    for candidate in remote:
        if not restart.moved.local_candidate.can_pair_with(candidate):
            continue
        pair = CandidatePair(restart.moved, candidate)
        connection._check_list.append(pair)
        await connection.check_start(pair)  # the controlling side nominates at once (aggressive nomination)
        if connection._nominated.get(1) is pair:
            break
    else:
        raise RestartFailed("no path from the new address reached the server")
    if old is not None and old.protocol is not restart.moved:
        await old.protocol.close()  # the old address is gone
