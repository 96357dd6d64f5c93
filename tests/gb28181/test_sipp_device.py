"""GB/T 28181 devices against the running app, with sipp (Debian's sip-tester) as the device: a SIP peer
nobody here wrote. Bad input comes from a raw socket: malformed SIP, unknown and revoked devices, a wrong
digest, oversize datagrams, an XML bomb; each gets its SIP status (or is dropped) and nothing else breaks.

The app runs in this process (``make_world``) with ``gb28181`` enabled on an ephemeral port, through the
environment (``CC_GB28181__…``) as an integrator would configure it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from command_center.keys import GB28181, GB28181_SIP
from config.settings import BusSettings, StoreSettings
from core.ids import UnitId
from gb28181 import manscdp, sip
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")

HERE = Path(__file__).resolve().parent
DOMAIN = "3402000000"
PLATFORM = "34020000002000000001"
DEVICE = "34020000001320000001"
OTHER = "34020000001320000002"
COURT = "HLJ0102"


@pytest.fixture
def gb_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_GB28181__ENABLED", "true")
    monkeypatch.setenv("CC_GB28181__SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("CC_GB28181__SIP_PORT", "0")
    monkeypatch.setenv("CC_GB28181__MAX_MESSAGE_BYTES", "8192")
    monkeypatch.setenv("CC_GB28181__FAILED_REGISTERS_PER_MINUTE", "5")


def sip_port(world: World) -> int:
    return world.client.app[GB28181_SIP].port


async def add_gb_unit(world: World, unit_id: str, device_id: str) -> str:
    response = await world.client.post(
        "/api/units",
        json={"id": unit_id, "name": unit_id, "kind": "body_camera", "court_id": COURT, "gb_device_id": device_id},
        headers=world.auth("admin"),
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["unit"]["offline_after_seconds"] == 180.0  # 3 missed keepalives of 60 s
    password: str = created["sip_password"]
    assert len(password) == 16
    return password


def china_time(offset_seconds: float = 0) -> str:
    return (datetime.now(manscdp.CHINA) + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def sipp(
    tmp_path: Path,
    scenario: str,
    port: int,
    *,
    device_id: str,
    password: str,
    transport: str = "u1",
    ooc: bool = False,
    local_ip: str = "127.0.0.1",
    **keys: str,
) -> int:
    """Run one sipp call against the app; the exit status (0: every step of the scenario as written)."""
    local = free_port(socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM)
    values = {"device_id": device_id, "domain": DOMAIN, "platform_id": PLATFORM, "expires": "3600", **keys}
    command = ["sipp", f"127.0.0.1:{port}", "-sf", str(HERE / scenario), "-m", "1", "-t", transport,
               "-i", local_ip, "-p", str(local), "-au", device_id, "-ap", password, "-nostdin",
               "-timeout", "20s", "-timeout_error", "-trace_err", "-error_file", str(tmp_path / f"{scenario}.err"),
               "-trace_msg", "-message_file", str(tmp_path / f"{scenario}.msg")]  # fmt: skip
    if ooc:
        command += ["-oocsf", str(HERE / "device_ooc.xml")]
    for name, value in values.items():
        command += ["-key", name, value]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        log_file = tmp_path / f"{scenario}.msg"
        print(stderr.decode(errors="replace"), log_file.read_text(errors="replace") if log_file.exists() else "")
    assert process.returncode is not None
    return process.returncode


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 10.0) -> Any:
    """Poll until ``check`` returns something truthy (the app works concurrently with the peer)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def live(world: World, unit_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/api/units/{unit_id}/live", headers=world.auth("operator"))
    assert response.status == 200
    view: dict[str, Any] = await response.json()
    return view


async def gb_view(world: World, unit_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/api/units/{unit_id}/gb28181", headers=world.auth("operator"))
    assert response.status == 200, await response.text()
    view: dict[str, Any] = await response.json()
    return view


async def live_alarms(world: World, unit_id: str) -> set[str]:
    response = await world.client.get("/api/alarms", headers=world.auth("operator"))
    return {a["kind"] for a in (await response.json())["alarms"] if a["unit_id"] == unit_id}


# the device's whole day ---------------------------------------------------------------------------------


async def test_a_gb_device_over_udp_registers_reports_and_raises_an_alarm(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path
) -> None:
    await device_day(await make_world(), tmp_path, "u1")


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_gb_device_over_tcp_on_postgres_and_redis(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path, pg_schema: str, redis_namespace: str
) -> None:
    world = await make_world(
        store=StoreSettings(url=POSTGRES_DSN, pool_min=1, pool_max=4),
        schema=pg_schema,
        bus=BusSettings(url=REDIS_URL, namespace=redis_namespace),
    )
    await device_day(world, tmp_path, "t1")


async def device_day(world: World, tmp_path: Path, transport: str) -> None:
    """sipp registers, keeps alive, answers the catalog query and the position subscription, reports a
    position twice and one by NOTIFY, and raises a one-key alarm; each shows where a user looks."""
    password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    screen = await world.client.ws_connect("/api/screen/ws", headers=world.auth("operator"))
    await screen.send_json({"type": "subscribe", "topics": ["unit:HLJ0102-GB1"]})
    fix_time, notify_time = china_time(-20), china_time(-10)
    status = await sipp(
        tmp_path, "device.xml", sip_port(world), device_id=DEVICE, password=password, transport=transport, ooc=True,
        pos_time=fix_time, alarm_time=china_time(-5), notify_time=notify_time,
        channel_1="34020000001310000001", channel_2="34020000001310000002",
    )  # fmt: skip
    assert status == 0, "sipp's scenario did not run as written"

    # Registered, over the transport it used; its catalog (one name in GB2312) stored and shown.
    async def catalog() -> dict[str, Any] | None:
        view = await gb_view(world, "HLJ0102-GB1")
        return view if len(view["channels"]) == 2 else None

    view = await eventually(catalog, "the catalog")
    assert view["registered"] and view["device_id"] == DEVICE
    assert view["transport"] == ("TCP" if transport == "t1" else "UDP")
    channels = {c["channel_id"]: c for c in view["channels"]}
    assert channels["34020000001310000001"]["name"] == "执法记录仪前置摄像头"
    assert channels["34020000001310000002"]["status"] == "OFF"

    # The same MobilePosition sent twice is stored once; the NOTIFY's is the newest and shows live.
    store = world.store
    await eventually(lambda: _count_is(store, "HLJ0102-GB1", 2), "two stored positions")
    unit_view = await live(world, "HLJ0102-GB1")
    assert unit_view["position"]["lat"] == pytest.approx(45.751)
    assert unit_view["position"]["lon"] == pytest.approx(126.641)

    # The one-key alarm is an SOS on the wall, through the unit status machine and the alarm desk.
    assert unit_view["status"] == "sos"
    assert "sos" in await live_alarms(world, "HLJ0102-GB1")
    sipp_log = (tmp_path / "device.xml.msg").read_text(errors="replace")  # the device got the confirmation
    assert re.search(r"MESSAGE sip:.*?<Response>\s*<CmdType>Alarm</CmdType>.*?<Result>OK</Result>", sipp_log, re.S)

    # A screen watching the unit saw it move and its SOS, live.
    seen: list[dict[str, Any]] = []
    while not any(u["status"] == "sos" and u["position"] and u["position"]["lat"] == 45.751 for u in seen):
        message = await asyncio.wait_for(screen.receive_json(), 10)
        seen += message.get("units", [])
    await screen.close()


async def _count_is(store: Any, unit_id: str, count: int) -> bool:
    return bool(await store.count_positions(UnitId(unit_id)) == count)


async def test_unregister_and_expiry_take_the_unit_offline_with_its_alarm(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    port = sip_port(world)
    assert await sipp(tmp_path, "register.xml", port, device_id=DEVICE, password=password) == 0
    assert (await live(world, "HLJ0102-GB1"))["status"] == "available"
    assert await sipp(tmp_path, "register.xml", port, device_id=DEVICE, password=password, expires="0") == 0
    assert (await live(world, "HLJ0102-GB1"))["status"] == "offline"
    assert "offline" in await live_alarms(world, "HLJ0102-GB1")
    assert not (await gb_view(world, "HLJ0102-GB1"))["registered"]

    # Registered again for 1 s: the registration lapses and the unit is offline again, by itself.
    assert await sipp(tmp_path, "register.xml", port, device_id=DEVICE, password=password, expires="1") == 0
    assert (await live(world, "HLJ0102-GB1"))["status"] == "available"

    async def offline() -> bool:
        return bool((await live(world, "HLJ0102-GB1"))["status"] == "offline")

    await eventually(offline, "the registration to expire")
    assert not (await gb_view(world, "HLJ0102-GB1"))["registered"]


async def test_missed_keepalives_take_the_unit_offline_and_the_next_brings_it_back(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC_GB28181__KEEPALIVE_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("CC_GB28181__KEEPALIVE_MISSES", "2")
    world = await make_world()
    response = await world.client.post(
        "/api/units",
        json={"id": "HLJ0102-GB1", "name": "GB", "kind": "body_camera", "court_id": COURT, "gb_device_id": DEVICE},
        headers=world.auth("admin"),
    )
    created = await response.json()
    assert created["unit"]["offline_after_seconds"] == 1.0  # 2 missed keepalives of 0.5 s
    raw = RawDevice(sip_port(world))
    try:
        reply = await raw.register(DEVICE, created["sip_password"])
        assert reply is not None and reply.status == 200
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", reply.get("date") or "")  # devices set clocks
        assert reply.get("expires") == "3600"
        assert (await live(world, "HLJ0102-GB1"))["status"] == "available"

        async def offline() -> bool:
            return bool((await live(world, "HLJ0102-GB1"))["status"] == "offline")

        await eventually(offline, "the missed keepalives")  # still registered, but silent
        assert (await gb_view(world, "HLJ0102-GB1"))["registered"]
        assert "offline" in await live_alarms(world, "HLJ0102-GB1")
        reply = await raw.message(DEVICE, keepalive(DEVICE))
        assert reply is not None and reply.status == 200
        assert (await live(world, "HLJ0102-GB1"))["status"] == "available"
    finally:
        raw.close()


async def test_a_retransmitted_position_gets_the_same_answer_and_is_handled_once(
    gb_enabled: None, make_world: AppFactory
) -> None:
    """RFC 3261 §17.2.2: a device that missed our 200 sends its MESSAGE again; it gets the same 200 (same To
    tag) without the body being parsed and ingested again, while its next MESSAGE is handled anew."""
    world = await make_world()
    password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    raw = RawDevice(sip_port(world))
    try:
        reply = await raw.register(DEVICE, password)
        assert reply is not None and reply.status == 200
        body = (
            f'<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>MobilePosition</CmdType><SN>5</SN>'
            f"<DeviceID>{DEVICE}</DeviceID><Time>{china_time(-2)}</Time><Longitude>126.64</Longitude>"
            "<Latitude>45.75</Latitude></Notify>"
        ).encode()
        request = raw.request("MESSAGE", DEVICE, headers="Content-Type: Application/MANSCDP+xml\r\n", body=body)
        first, again = await raw.exchange(request), await raw.exchange(request)
        assert first is not None and again is not None and first.status == again.status == 200
        assert sip.tag_of(first.get("to") or "") == sip.tag_of(again.get("to") or "") is not None
        service = world.client.app[GB28181]
        assert service.retransmissions_answered == 1
        await eventually(lambda: _count_is(world.store, "HLJ0102-GB1", 1), "the position stored")
        later = await raw.message(DEVICE, body.replace(b"<SN>5</SN>", b"<SN>6</SN>"))  # a new CSeq: handled
        assert (
            later is not None
            and later.status == 200
            and sip.tag_of(later.get("to") or "") != sip.tag_of(first.get("to") or "")
        )
        assert service.retransmissions_answered == 1
    finally:
        raw.close()


async def test_a_wrong_password_is_challenged_again_and_logged_with_the_device_id(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world()
    await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    with caplog.at_level(logging.WARNING, logger="gb28181.service"):
        status = await sipp(tmp_path, "register_wrong.xml", sip_port(world), device_id=DEVICE, password="guessed")
    assert status == 0, "the wrong digest was not answered 401"
    assert any(DEVICE in r.getMessage() and "wrong digest" in r.getMessage() for r in caplog.records)
    assert not (await gb_view(world, "HLJ0102-GB1"))["registered"]
    assert (await live(world, "HLJ0102-GB1"))["status"] == "offline"  # never heard


# bad input from a raw socket ----------------------------------------------------------------------------


class RawDevice:
    """A UDP socket speaking SIP by hand, to send what no well-behaved peer would."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    async def exchange(self, data: bytes, *, expect_answer: bool = True) -> sip.SipMessage | None:
        """Send, and return the response to it (requests the platform sends us, and answers to earlier
        requests, are skipped)."""
        try:
            cseq: tuple[int, str] | None = sip.parse(data, max_bytes=1 << 20).cseq
        except sip.SipParseError:
            cseq = None  # malformed on purpose: whatever answer comes
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, ("127.0.0.1", self.port))
        deadline = time.monotonic() + (5.0 if expect_answer else 0.5)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply = await asyncio.wait_for(loop.sock_recv(self.sock, 65_536), remaining)
            except TimeoutError:
                break
            message = sip.parse(reply, max_bytes=65_536)
            if not message.is_request and (cseq is None or message.cseq == cseq):
                return message
        return None

    def request(self, method: str, device_id: str, *, headers: str = "", body: bytes = b"") -> bytes:
        self.cseq += 1
        head = (
            f"{method} sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sock.getsockname()[1]};rport;branch=z9hG4bK{self.cseq}\r\n"
            f"From: <sip:{device_id}@{DOMAIN}>;tag=raw{self.cseq}\r\n"
            f"To: <sip:{device_id}@{DOMAIN}>\r\n"
            f"Call-ID: raw-{device_id}@127.0.0.1\r\n"
            f"CSeq: {self.cseq} {method}\r\n"
            f"{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def register(self, device_id: str, password: str) -> sip.SipMessage | None:
        """The two-step Digest REGISTER (RFC 2617 with qop=auth)."""
        challenge = await self.exchange(self.request("REGISTER", device_id, headers="Expires: 3600\r\n"))
        if challenge is None or challenge.status != 401:
            return challenge
        params = dict(part.strip().split("=", 1) for part in (challenge.get("www-authenticate") or "")[7:].split(","))
        nonce = params["nonce"].strip('"')
        uri = f"sip:{PLATFORM}@{DOMAIN}"
        ha1 = hashlib.md5(f"{device_id}:{DOMAIN}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        answer = hashlib.md5(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}".encode()).hexdigest()
        authorization = (
            f'Authorization: Digest username="{device_id}", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
            f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"\r\n'
        )
        return await self.exchange(self.request("REGISTER", device_id, headers=authorization + "Expires: 3600\r\n"))

    async def message(self, device_id: str, body: bytes) -> sip.SipMessage | None:
        return await self.exchange(
            self.request("MESSAGE", device_id, headers="Content-Type: Application/MANSCDP+xml\r\n", body=body)
        )


def keepalive(device_id: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>Keepalive</CmdType><SN>9</SN>'
        f"<DeviceID>{device_id}</DeviceID><Status>OK</Status></Notify>"
    ).encode()


async def test_bad_input_gets_its_status_and_other_units_carry_on(
    gb_enabled: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    good_password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    revoked_password = await add_gb_unit(world, "HLJ0102-GB2", OTHER)
    port = sip_port(world)
    raw = RawDevice(port)
    try:
        # Both devices register (a raw peer too); the good one stays registered through the rest.
        for device_id, password in ((DEVICE, good_password), (OTHER, revoked_password)):
            reply = await raw.register(device_id, password)
            assert reply is not None and reply.status == 200
        # Revoking a registered unit ends its registration at once (through the revocation registry).
        response = await world.client.post("/api/units/HLJ0102-GB2/revoke", headers=world.auth("admin"))
        assert response.status == 200
        reply = await raw.message(OTHER, keepalive(OTHER))
        assert reply is not None and reply.status == 403
        assert not (await gb_view(world, "HLJ0102-GB2"))["registered"]

        # Malformed SIP: answered 400 when it can be answered at all, dropped when it cannot.
        bad_length = raw.request("MESSAGE", DEVICE).replace(b"Content-Length: 0", b"Content-Length: 500")
        reply = await raw.exchange(bad_length)
        assert reply is not None and reply.status == 400
        assert await raw.exchange(b"\x00\xff garbage \r\n\r\n", expect_answer=False) is None

        # Oversize: 413 (the limit is 8,192 bytes here).
        reply = await raw.message(DEVICE, keepalive(DEVICE) + b" " * 10_000)
        assert reply is not None and reply.status == 413

        # An XML bomb from a registered device: 400, never expanded.
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(
                b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
                for i in range(1, 10)
            )
            + b"]><Notify><CmdType>&lol9;</CmdType></Notify>"
        )
        reply = await raw.message(DEVICE, bomb)
        assert reply is not None and reply.status == 400

        # Unknown and revoked devices; a MESSAGE from a device that is not registered.
        reply = await raw.register("34020000001329999999", "whatever")
        assert reply is not None and reply.status == 404
        reply = await raw.register(OTHER, revoked_password)
        assert reply is not None and reply.status == 403
        reply = await raw.message(OTHER, keepalive(OTHER))
        assert reply is not None and reply.status == 403

        # The good device is unaffected: its keepalive is taken, but not from another address in its name.
        reply = await raw.message(DEVICE, keepalive(DEVICE))
        assert reply is not None and reply.status == 200
        impostor = RawDevice(port, host="127.0.0.3")
        try:
            reply = await impostor.message(DEVICE, keepalive(DEVICE))
            assert reply is not None and reply.status == 403
        finally:
            impostor.close()

        # Failures from one address are throttled (5 a minute here: 2 so far, then 3 wrong digests).
        for _ in range(3):
            reply = await raw.register(DEVICE, "wrong password")
            assert reply is not None and reply.status == 401
        reply = await raw.register(DEVICE, good_password)
        assert reply is not None and reply.status == 503 and int(reply.get("retry-after") or 0) > 0
    finally:
        raw.close()

    # Another address (sipp's) is not throttled, and the device still works from there.
    sipp_ip = "127.0.0.2"  # loopback has the whole 127/8
    assert await sipp(tmp_path, "register.xml", port, device_id=DEVICE, password=good_password, local_ip=sipp_ip) == 0
    assert (await live(world, "HLJ0102-GB1"))["status"] == "available"


async def test_a_revocation_made_in_the_database_ends_the_registration_too(
    gb_enabled: None, make_world: AppFactory
) -> None:
    """``device revoke`` from the CLI announces nothing on an in-process bus: the revocation registry's recheck
    of the store finds it, and the registration ends like the unit's sockets."""
    world = await make_world(recheck_seconds=1)
    password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    raw = RawDevice(sip_port(world))
    try:
        reply = await raw.register(DEVICE, password)
        assert reply is not None and reply.status == 200
        await world.store.revoke_unit(UnitId("HLJ0102-GB1"))  # what the CLI does

        async def ended() -> bool:
            return not (await gb_view(world, "HLJ0102-GB1"))["registered"]

        await eventually(ended, "the recheck to end the registration")
        reply = await raw.message(DEVICE, keepalive(DEVICE))
        assert reply is not None and reply.status == 403
    finally:
        raw.close()


async def test_mutated_messages_never_break_the_server(
    gb_enabled: None, make_world: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Valid REGISTERs and MESSAGEs with bytes flipped, cut or repeated (a fixed seed, so a failure replays):
    each is answered or dropped, nothing is logged as an error, and the device still works afterwards."""
    world = await make_world()
    password = await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    raw = RawDevice(sip_port(world))
    fuzzer = RawDevice(sip_port(world))  # its own socket: 300 answers would overflow the device's buffer
    try:
        reply = await raw.register(DEVICE, password)
        assert reply is not None and reply.status == 200
        seeds = [raw.request("REGISTER", DEVICE, headers="Expires: 3600\r\n"),
                 raw.request("MESSAGE", DEVICE, headers="Content-Type: Application/MANSCDP+xml\r\n",
                             body=keepalive(DEVICE))]  # fmt: skip
        chance = random.Random(28181)
        with caplog.at_level(logging.WARNING):
            for _ in range(300):
                data = bytearray(chance.choice(seeds))
                for _ in range(chance.randint(1, 8)):
                    at = chance.randrange(len(data))
                    operation = chance.randrange(3)
                    if operation == 0:
                        data[at] = chance.randrange(256)
                    elif operation == 1:
                        del data[at : at + chance.randint(1, 40)]
                    else:
                        data[at:at] = data[at : at + chance.randint(1, 40)] * chance.randint(1, 3)
                await asyncio.get_running_loop().sock_sendto(fuzzer.sock, bytes(data), ("127.0.0.1", raw.port))
                await asyncio.sleep(0.001)  # the server runs on this loop: let it read (a burst would overflow
                # its socket buffer and the kernel would drop datagrams, the keepalive below among them)
            reply = await raw.message(DEVICE, keepalive(DEVICE))  # still registered, still answered
        assert reply is not None and reply.status == 200
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an input broke a handler"
    finally:
        raw.close()
        fuzzer.close()


async def test_api_refuses_a_malformed_or_taken_device_id(gb_enabled: None, make_world: AppFactory) -> None:
    world = await make_world()
    await add_gb_unit(world, "HLJ0102-GB1", DEVICE)
    for device_id, status in (("1234", 422), (DEVICE, 409)):
        response = await world.client.post(
            "/api/units",
            json={
                "id": "HLJ0102-GB9",
                "name": "x",
                "kind": "body_camera",
                "court_id": COURT,
                "gb_device_id": device_id,
            },
            headers=world.auth("admin"),
        )
        assert response.status == status, await response.text()
    response = await world.client.get("/api/units/HLJ0102-U01/gb28181", headers=world.auth("operator"))
    assert response.status == 404  # a WebSocket unit is not a GB device
