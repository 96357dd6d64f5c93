"""The HTTPS entry point: config/nginx/nginx.conf with TLS in front of one server process, met as users meet it.

A self-signed certificate from scripts/make_tls_cert.sh (what a first look uses; a court puts its own in the
same files). Plain HTTP only redirects; HTTPS answers with HSTS; a console's screen socket, a unit's
telemetry socket and its WHIP stream, and a viewer's WHEP session all work through it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from bench.cluster import NGINX, Cluster, Tls, render_nginx
from bench.harness import ROOT, free_port
from field_device.media_unit import MediaUnit
from tests.media_support import SDP_HEADERS, connected, loopback, new_pc
from tests.test_live_tracking import Screen, fix, send

pytestmark = pytest.mark.skipif(
    not NGINX.exists() or shutil.which("openssl") is None,
    reason="needs nginx and openssl (Debian packages nginx-light, openssl; setup.sh --dev)",
)
__all__ = ["loopback"]  # the fixture, used by the media test

PASSWORD = "https-operator-password"
UNIT = "HLJ0102-T1"
CAMERA = "HLJ0102-T2"
SECRETS: dict[str, str] = {}  # the devices' secrets, filled by the fixture


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("https")
    made = subprocess.run([str(ROOT / "scripts" / "make_tls_cert.sh"), str(workdir / "tls"), "127.0.0.1"],
                          capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    tls = Tls(workdir / "tls" / "server.crt", workdir / "tls" / "server.key", http_port=free_port())
    cluster = Cluster(workdir, processes=1, store_url=f"sqlite:///{workdir / 'cc.db'}", redis_url="memory://", tls=tls)
    cluster.init()
    cluster.add_user("op1", "operator", PASSWORD)
    SECRETS.update({unit: cluster.add_device(unit) for unit in (UNIT, CAMERA)})
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        cluster.stop()


@asynccontextmanager
async def trusting(proxy: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that trusts the generated certificate, as a console that imported it does."""
    assert proxy.tls is not None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=proxy.tls.client_context())) as http:
        yield http


async def login(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.post(f"{base}/api/auth/login", json={"username": "op1", "password": PASSWORD}) as answer:
        assert answer.status == 200, await answer.text()
        return {"Authorization": f"Bearer {(await answer.json())['token']}"}


async def test_plain_http_only_redirects_to_https(proxy: Cluster) -> None:
    assert proxy.tls is not None
    plain = f"http://127.0.0.1:{proxy.tls.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{plain}/wall?screen=1", allow_redirects=False) as answer:
            assert answer.status == 301
            assert answer.headers["Location"] == f"{proxy.url}/wall?screen=1"
        async with http.post(f"{plain}/api/auth/login", json={"username": "op1", "password": PASSWORD},
                             allow_redirects=False) as answer:  # fmt: skip
            assert answer.status == 301  # no session is ever handed out in the clear
            assert "token" not in await answer.text()


async def test_https_answers_with_the_certificate_and_hsts(proxy: Cluster) -> None:
    async with trusting(proxy) as http:
        async with http.get(f"{proxy.url}/api/health") as answer:
            assert answer.status == 200
            assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        async with http.get(f"{proxy.url}/api/units") as refused:  # errors carry it too
            assert refused.status == 401
            assert refused.headers["Strict-Transport-Security"] == "max-age=31536000"
    async with aiohttp.ClientSession() as untrusting:  # the system's authorities do not know a self-signed one
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await untrusting.get(f"{proxy.url}/api/health")


async def test_sockets_work_through_https(proxy: Cluster) -> None:
    """A page's screen socket (with its origin and a ticket) sees a unit that reports over its own socket."""
    async with trusting(proxy) as http:
        auth = await login(http, proxy.url)
        async with http.post(f"{proxy.url}/api/auth/ticket", headers=auth) as answer:
            ticket = (await answer.json())["ticket"]
        ws = await http.ws_connect(f"{proxy.url.replace('https', 'wss')}/api/screen/ws?ticket={ticket}",
                                   headers={"Origin": proxy.url})  # fmt: skip
        screen = Screen(ws)
        await ws.send_json({"type": "subscribe", "topics": ["units"]})
        await screen.next("subscribed")
        secret = SECRETS[UNIT]
        unit = await http.ws_connect(f"{proxy.url}/api/telemetry/ws", headers={"Authorization": f"Bearer {secret}"})
        assert (await send(unit, fix(1)))["type"] == "ack"
        seen = await screen.unit_update(UNIT, lambda view: view["position"] is not None)
        assert seen["position"]["lat"] == pytest.approx(45.75)
        await unit.close()
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError):  # a page on another origin is refused as before
            async with http.post(f"{proxy.url}/api/auth/ticket", headers=auth) as answer:
                other = (await answer.json())["ticket"]
            await http.ws_connect(f"{proxy.url}/api/screen/ws?ticket={other}", headers={"Origin": "https://x.example"})


async def test_a_unit_streams_by_whip_and_a_console_watches_by_whep_through_https(
    proxy: Cluster, loopback: None
) -> None:
    async with trusting(proxy) as http:
        unit = MediaUnit(proxy.url, SECRETS[CAMERA], talkback=False, session=http, label="T2")
        await unit.start()
        viewer = new_pc()
        try:
            auth = await login(http, proxy.url)
            await _eventually(lambda: _streaming(http, proxy.url, auth), [CAMERA], within=20)
            viewer.addTransceiver("video", direction="recvonly")
            tracks: asyncio.Queue[Any] = asyncio.Queue()
            viewer.on("track", tracks.put_nowait)
            await viewer.setLocalDescription(await viewer.createOffer())
            async with http.post(f"{proxy.url}/api/whep/{CAMERA}", data=viewer.localDescription.sdp,
                                 headers={**auth, **SDP_HEADERS}) as answer:  # fmt: skip
                assert answer.status == 201, await answer.text()
                location = answer.headers["Location"]
                sdp = await answer.text()
            await viewer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            await connected(viewer)
            track = await asyncio.wait_for(tracks.get(), 10)
            frames = [await asyncio.wait_for(track.recv(), 15) for _ in range(5)]
            assert frames[0].width == 640 and frames[0].height == 480
            async with http.delete(f"{proxy.url}{location}", headers=auth) as ended:
                assert ended.status == 200, await ended.text()
        finally:
            await viewer.close()
            await unit.close()


async def _streaming(http: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> list[str]:
    async with http.get(f"{base}/api/media/streaming", headers=auth) as answer:
        return list((await answer.json())["unit_ids"])


async def _eventually(probe: Any, expected: Any, within: float = 10.0) -> None:
    seen = None
    for _ in range(int(within / 0.2) + 1):
        if (seen := await probe()) == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {expected!r}, still {seen!r} after {within} s")


def test_benchmarks_render_the_same_file_as_plain_http(tmp_path: Path) -> None:
    """Without ``tls``: one plain server on the port, no redirect, no TLS directive, and nginx accepts it."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(["127.0.0.1:8101"], 18080, tmp_path))
    text = conf.read_text()
    assert "listen 127.0.0.1:18080;" in text and "return 301" not in text
    assert "ssl" not in text and "Strict-Transport-Security" not in text
    checked = subprocess.run([str(NGINX), "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
