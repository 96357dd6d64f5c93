"""TURN for units behind carrier NAT or UDP-blocking networks: a real coturn (Debian ``coturn``) with the REST
shared-secret scheme, credentials handed to the unit in the WHIP answer's ``Link`` headers (RFC 9725 §4.6).

The unit here may only use relayed candidates reached over TCP (``iceTransportPolicy=relay``,
``turn:…?transport=tcp``): it sends no UDP of its own, as a unit that can only reach TCP, yet it streams and
the centre's viewer decodes it. Everything runs on loopback (coturn's ``--allow-loopback-peers``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from command_center.keys import MEDIA
from core.ids import UnitId
from field_device.ice_restart import ice_connection
from tests.conftest import AppFactory
from tests.media_support import SDP_HEADERS, UNIT, UnitPeer, ViewerPeer, loopback

__all__ = ["loopback"]
pytestmark = [
    pytest.mark.usefixtures("loopback"),
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed (scripts/setup.sh)"),
]

SECRET = "coturn-shared-secret-for-the-test"
LINK = re.compile(
    r'<([^>]+)>; rel="ice-server"(?:; username="([^"]*)"; credential="([^"]*)"; credential-type="password")?'
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[int]:
    """A coturn listening on TCP (and UDP) 127.0.0.1, checking REST credentials made from ``SECRET``."""
    port = free_port()
    log = tmp_path / "turnserver.log"
    process = await asyncio.create_subprocess_exec(
        "turnserver", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
         "--allow-loopback-peers", "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=court.example",
         "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log", f"--log-file={log}", "--simple-log",
         f"--pidfile={tmp_path / 'turnserver.pid'}", f"--userdb={tmp_path / 'turndb'}",
         "--min-port=49152", "--max-port=49999", "--fingerprint",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail(f"coturn did not listen on {port}: {log.read_text() if log.exists() else ''}")
        yield port
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 5)


async def test_a_unit_that_can_only_reach_tcp_streams_through_turn_with_the_credential_it_was_handed(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch, coturn: int
) -> None:
    monkeypatch.setenv("CC_MEDIA__ICE_SERVERS", f'["turn:127.0.0.1:{coturn}?transport=tcp"]')
    monkeypatch.setenv("CC_MEDIA__TURN_SECRET", SECRET)
    world = await make_world()

    # The first answer hands the unit its TURN server and credential (a unit keeps them for its next tries).
    first = UnitPeer(world, channel=False)
    response = await world.client.post("/api/whip", data=await first.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201
    links = [LINK.fullmatch(link) for link in response.headers.getall("Link")]
    [server] = [RTCIceServer(urls=m[1], username=m[2], credential=m[3]) for m in links if m is not None and m[2]]
    await world.client.delete(response.headers["Location"], headers=world.auth("device"))
    await first.close()

    # It publishes again, relayed only: no host candidate, nothing sent over UDP by the unit itself.
    relayed = RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    unit = UnitPeer(world, channel=False, rgb=(30, 160, 220), configuration=relayed)
    await unit.publish()
    offered = [line for line in unit.pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
    assert offered and all(" typ relay " in line for line in offered), offered
    assert ice_connection(unit.pc)._nominated[1].local_candidate.type == "relay"

    viewer = ViewerPeer(world)
    await viewer.watch()
    frames = await viewer.frames("video", 5)
    assert len(frames) == 5
    publisher = world.client.app[MEDIA].publisher(UnitId(UNIT))
    assert publisher is not None and publisher.recorder is not None  # recorded as any other session
    await viewer.close()
    await unit.close()
