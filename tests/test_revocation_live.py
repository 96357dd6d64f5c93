"""Revocation reaches live connections, and no secret travels in a URL or lands in the access log.

Against the running app: a revoked device's telemetry socket is closed (4401) and what it sends next is not
stored; a logged-out, disabled or admin-revoked user's screen socket closes, as does one whose session
expires while it is open; a viewer's WHEP view and an operator's talkback end on logout; a revoked unit's
media session and data channel end. Across two real server processes on PostgreSQL and Redis: a ticket
issued by one opens a socket on the other, and logout on one / ``device revoke`` from the CLI close sockets
on the other. Tickets work once and expire; ``?token=`` is refused; the access log holds no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from bench.cluster import Cluster
from bench.harness import POSTGRES_ADMIN
from command_center.access_log import safe_target
from command_center.credentials import lookup_hash, new_session_token
from command_center.keys import MEDIA, REVOCATIONS
from command_center.revocation import Credential, Revocation, Subject, expired, matches
from command_center.tickets import LocalTickets, RedisTickets
from config.settings import ObservabilitySettings
from core.errors import NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.models import Court, CourtLevel, Role
from persistence.port import Store
from tests.conftest import REDIS_URL, AppFactory, World
from tests.media_support import UNIT, UnitPeer, ViewerPeer, eventually, loopback
from tests.test_live_tracking import fix, open_screen, open_unit, send
from tests.test_media_talkback import Operator

__all__ = ["loopback"]  # the fixture, used by the media tests

CLOSE_WITHIN = 10.0  # a bound for a hung test, not a measurement


async def closed(ws: ClientWebSocketResponse) -> tuple[int | None, str]:
    """Read until the server closes the socket; the code and reason of its close frame (``ws.close_code``
    may say 1006 instead: aiohttp's server, closing from another task, does not wait for the client's reply)."""
    async with asyncio.timeout(CLOSE_WITHIN):
        while True:
            message = await ws.receive()
            if message.type is WSMsgType.CLOSE:
                return int(message.data), str(message.extra or "")
            if message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                return ws.close_code, "(no close frame)"


async def user_id(world: World, username: str) -> int:
    user = await world.store.find_user(username)
    assert user is not None
    return user.id


# Devices ---------------------------------------------------------------------------------------------


async def test_a_revoked_devices_telemetry_socket_is_closed_and_its_next_message_not_stored(world: World) -> None:
    unit = await open_unit(world)
    assert (await send(unit, fix(1)))["stored"] == [1]
    revoked = await world.client.post(f"/api/units/{UNIT}/revoke", headers=world.auth("admin"))
    assert revoked.status == 200
    with contextlib.suppress(ConnectionError):
        await unit.send_json(fix(2))  # what a stolen phone sends right after: never stored
    assert await closed(unit) == (4401, "revoked")
    await asyncio.sleep(0.3)  # let anything that slipped through reach the writer; nothing should
    track = await world.store.track(UnitId(UNIT), since_ms=0, until_ms=2**62)
    assert [p.seq for p in track] == [1]
    again = await world.client.get("/api/me", headers=world.auth("device"))
    assert again.status == 401


async def test_a_socket_authenticated_just_before_a_revocation_is_closed_too(world: World) -> None:
    """The revocation event arrives between the socket's authentication and its registration (simulated by
    applying it before the store knows): the socket is closed as it registers."""
    await world.client.app[REVOCATIONS].apply(Revocation(Subject.UNIT, UNIT, "revoked"))
    unit = await open_unit(world)
    assert await closed(unit) == (4401, "revoked")


@pytest.mark.usefixtures("loopback")
async def test_a_revoked_units_media_session_and_data_channel_end(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish()
    assert (await unit.send(fix(1)))["stored"] == [1]
    telemetry = await open_unit(world)
    revoked = await world.client.post(f"/api/units/{UNIT}/revoke", headers=world.auth("admin"))
    assert revoked.status == 200
    assert await closed(telemetry) == (4401, "revoked")
    await eventually(lambda: world.client.app[MEDIA].publisher(UnitId(UNIT)) is None, what="media session ended")
    channel = unit.channel
    assert channel is not None
    await eventually(lambda: channel.readyState == "closed", what="the data channel closed")
    await unit.close()


# People ----------------------------------------------------------------------------------------------


async def test_a_logged_out_users_screen_socket_closes(world: World) -> None:
    screen = await open_screen(world, "operator")
    other = await open_screen(world, "supervisor")  # someone else's screen stays
    out = await world.client.post("/api/auth/logout", headers=world.auth("operator"))
    assert out.status == 204
    assert await closed(screen.ws) == (4401, "logged out")
    await other.ws.send_json({"type": "ping"})
    assert (await other.next("pong"))["type"] == "pong"
    await other.ws.close()


async def test_a_disabled_users_sockets_close_and_they_cannot_come_back(world: World) -> None:
    second = await world.login("operator")  # the same person on a second screen, with a second session
    screens = [await open_screen(world, "operator"), await open_screen(world, "operator")]
    by_ticket = await world.client.ws_connect(f"/api/screen/ws?ticket={await world.ticket('operator')}")
    by_second = await world.client.ws_connect("/api/screen/ws", headers={"Authorization": f"Bearer {second}"})
    disabled = await world.client.post(
        f"/api/users/{await user_id(world, 'operator')}/disable", headers=world.auth("admin")
    )
    assert disabled.status == 200 and (await disabled.json())["disabled"] is True
    for ws in [s.ws for s in screens] + [by_ticket, by_second]:
        assert await closed(ws) == (4401, "disabled")
    refused = await world.client.get("/api/me", headers={"Authorization": f"Bearer {second}"})
    assert refused.status == 401
    login = await world.client.post(
        "/api/auth/login", json={"username": "operator", "password": world.passwords["operator"]}
    )
    assert login.status == 401
    enabled = await world.client.post(
        f"/api/users/{await user_id(world, 'operator')}/enable", headers=world.auth("admin")
    )
    assert enabled.status == 200 and (await enabled.json())["disabled"] is False
    still = await world.client.get("/api/me", headers={"Authorization": f"Bearer {second}"})
    assert still.status == 401  # disabling ended the sessions; enabling does not bring them back
    assert (await world.client.post("/api/users/424242/disable", headers=world.auth("admin"))).status == 404


async def test_an_admin_revoking_a_users_sessions_closes_their_sockets(world: World) -> None:
    screen = await open_screen(world, "judge")
    revoked = await world.client.post(
        f"/api/users/{await user_id(world, 'judge')}/revoke-sessions", headers=world.auth("admin")
    )
    assert revoked.status == 200
    assert await closed(screen.ws) == (4401, "revoked")


async def test_a_session_that_expires_while_its_socket_is_open_ends_it(world: World) -> None:
    token = new_session_token()
    await world.store.add_session(
        token_hash=lookup_hash(token),
        user_id=UserId(await user_id(world, "operator")),
        expires_at=datetime.now(UTC) + timedelta(seconds=1.5),
    )
    ws = await world.client.ws_connect("/api/screen/ws", headers={"Authorization": f"Bearer {token}"})
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    assert await closed(ws) == (4401, "expired")


async def test_a_revocation_no_event_announced_is_found_by_the_recheck(world: World) -> None:
    """A session revoked straight in the store (as a CLI on an in-process bus would): the periodic recheck
    against the store closes its socket (called here rather than waited for)."""
    screen = await open_screen(world, "operator")
    await world.store.revoke_session(lookup_hash(world.tokens["operator"]))
    assert await world.client.app[REVOCATIONS].recheck() == 1
    assert await closed(screen.ws) == (4401, "revoked")


async def test_a_unit_revoked_with_no_event_is_found_by_the_recheck(world: World) -> None:
    """The same for a device: revoked straight in the store, its telemetry socket is closed by the recheck,
    which asks the store for the revoked units only; a unit not revoked keeps its socket."""
    unit = await open_unit(world)
    assert (await send(unit, fix(1)))["stored"] == [1]
    revocations = world.client.app[REVOCATIONS]
    assert await revocations.recheck() == 0
    await world.store.revoke_unit(UnitId(UNIT))
    assert await world.store.revoked_unit_ids() == {UnitId(UNIT)}
    assert await revocations.recheck() == 1
    assert await closed(unit) == (4401, "revoked")


@pytest.mark.usefixtures("loopback")
async def test_a_viewers_whep_session_and_talkback_end_on_logout(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8", audio=True, talkback=True, channel=False)
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch(role="operator")
    assert len(await viewer.frames("video", 3)) == 3
    operator = Operator(world, role="operator")
    assert (await operator.talk())[0] == 201
    colleague = ViewerPeer(world)  # another person's view of the same unit stays
    await colleague.watch(role="supervisor")
    media = world.client.app[MEDIA]
    assert len(media.viewers()) == 3
    out = await world.client.post("/api/auth/logout", headers=world.auth("operator"))
    assert out.status == 204
    await eventually(lambda: [v.username for v in media.viewers()] == ["supervisor"], what="the views ended")
    await eventually(lambda: viewer.pc.connectionState == "closed" or viewer.pc.connectionState == "failed",
                     within=40, what="the viewer's peer connection went down")  # fmt: skip
    ends = [e for e in await world.store.audit_entries() if e.action in ("media.view.end", "media.talk.end")]
    assert sorted(e.details["reason"] for e in ends) == ["logged out", "logged out"]
    assert len(await colleague.frames("video", 3)) == 3
    await colleague.close()
    await viewer.close()
    await operator.pc.close()
    await unit.close()


@pytest.mark.usefixtures("loopback")
async def test_a_view_ends_when_its_session_expires(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8", channel=False)
    await unit.publish()
    token = new_session_token()
    await world.store.add_session(
        token_hash=lookup_hash(token),
        user_id=UserId(await user_id(world, "operator")),
        expires_at=datetime.now(UTC) + timedelta(seconds=4),
    )
    world.tokens["short"] = token
    viewer = ViewerPeer(world)
    await viewer.watch(role="short")
    media = world.client.app[MEDIA]
    assert len(media.viewers()) == 1
    await eventually(lambda: not media.viewers(), within=15, what="the view ended at expiry")
    # The view leaves the session table first, then is freed and its end audited (media.sessions._close).
    ends: list[str] = []
    for _ in range(100):
        ends = [e.details["reason"] for e in await world.store.audit_entries() if e.action == "media.view.end"]
        if ends:
            break
        await asyncio.sleep(0.1)
    assert ends == ["expired"]
    await viewer.close()
    await unit.close()


# Tickets and secrets in URLs ------------------------------------------------------------------------


async def test_a_ticket_opens_one_websocket_once(world: World) -> None:
    ticket = await world.ticket("operator")
    ws = await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as used:
        await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
    assert used.value.status == 401
    # A device's ticket opens its telemetry socket (and not a person's screen).
    device = await world.client.ws_connect(f"/api/telemetry/ws?ticket={await world.ticket('device')}")
    assert (await send(device, fix(1)))["stored"] == [1]
    await device.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
        await world.client.ws_connect(f"/api/screen/ws?ticket={await world.ticket('device')}")
    assert wrong.value.status == 403
    for bad in ("cc_t_forged", ""):
        with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
            await world.client.ws_connect(f"/api/screen/ws?ticket={bad}")
        assert forged.value.status == 401
    # A ticket of a session that has since ended opens nothing.
    stale = await world.ticket("judge")
    await world.client.post("/api/auth/logout", headers=world.auth("judge"))
    with pytest.raises(aiohttp.WSServerHandshakeError) as ended:
        await world.client.ws_connect(f"/api/screen/ws?ticket={stale}")
    assert ended.value.status == 401


async def test_a_ticket_expires(make_world: AppFactory) -> None:
    world = await make_world(ticket_ttl_seconds=0.2)
    ticket = await world.ticket("operator")
    await asyncio.sleep(0.5)
    with pytest.raises(aiohttp.WSServerHandshakeError) as late:
        await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
    assert late.value.status == 401


async def test_local_tickets_expire_on_their_clock() -> None:
    now = [100.0]
    book = LocalTickets(30.0, clock=lambda: now[0])
    first, second = await book.issue("s:abc"), await book.issue("d:def")
    assert first != second and first.startswith("cc_t_")
    assert await book.redeem(first) == "s:abc"
    assert await book.redeem(first) is None  # once
    now[0] += 30.0
    assert await book.redeem(second) is None  # expired
    assert await book.redeem("cc_t_never-issued") is None


@pytest.mark.redis
async def test_redis_tickets_work_once_across_books_and_expire(redis_namespace: str) -> None:
    issuer = RedisTickets(REDIS_URL, namespace=redis_namespace, ttl_seconds=30)
    other = RedisTickets(REDIS_URL, namespace=redis_namespace, ttl_seconds=30)  # another process's
    brief = RedisTickets(REDIS_URL, namespace=redis_namespace, ttl_seconds=0.2)
    try:
        ticket = await issuer.issue("s:abc")
        assert await other.redeem(ticket) == "s:abc"
        assert await issuer.redeem(ticket) is None
        short = await brief.issue("d:def")
        await asyncio.sleep(0.5)
        assert await other.redeem(short) is None
    finally:
        for book in (issuer, other, brief):
            await book.close()


async def test_a_token_in_a_websocket_url_is_refused(world: World) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.client.ws_connect(f"/api/screen/ws?token={world.tokens['operator']}")
    assert refused.value.status == 401
    plain = await world.client.get(f"/api/units?token={world.tokens['operator']}")
    assert plain.status == 401
    assert "?token=" in (await plain.json())["error"]["message"]


async def test_the_access_log_holds_no_token_secret_or_ticket(
    make_world: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world(observability=ObservabilitySettings(access_log="all"))  # every request logged
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    ticket = await world.ticket("operator")
    ws = await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
    await ws.close()
    device_ticket = await world.ticket("device")
    device = await world.client.ws_connect(f"/api/telemetry/ws?ticket={device_ticket}")
    await device.close()
    await world.client.get(f"/api/units?token={world.tokens['operator']}&secret={world.device_secret}")
    await world.client.get("/api/me", headers=world.auth("device"))
    await world.client.get("/api/units/HLJ0102-U01/track?since_ms=0&until_ms=1", headers=world.auth("operator"))
    await world.client.post("/api/auth/logout", headers=world.auth("supervisor"))
    text = caplog.text
    secrets = [ticket, device_ticket, world.device_secret, *world.tokens.values()]
    assert not [s for s in secrets if s in text]
    for fragment in ("cc_s_", "cc_d_", "cc_t_", "password"):
        assert fragment not in text
    assert '"GET /api/screen/ws?ticket HTTP/1.1" 101' in text  # what was asked is still there, values are not
    assert '"GET /api/units?token&secret HTTP/1.1" 401' in text
    assert "/api/units/HLJ0102-U01/track?since_ms&until_ms" in text


# Across processes ------------------------------------------------------------------------------------


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[Cluster]:
    """Two real server processes (``serve``) on a PostgreSQL database and a Redis namespace of their own."""
    database = f"cc_revoke_{uuid.uuid4().hex[:8]}"
    asyncio.run(_database(f"CREATE DATABASE {database}"))
    store_url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    cluster = Cluster(
        tmp_path, processes=2, store_url=store_url, redis_url=REDIS_URL, env={"CC_AUTH__RECHECK_SECONDS": "3600"}
    )  # fmt: skip  (only events can act in time)
    try:
        cluster.init()
        cluster.add_user("op1", "operator", "revocation-test-password")
        cluster.secrets = {"HLJ0102-R1": cluster.add_device("HLJ0102-R1")}  # type: ignore[attr-defined]
        asyncio.run(cluster.start(proxy=False))
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(_database(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


async def _database(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_revocation_and_tickets_work_across_processes(two_processes: Cluster) -> None:
    a, b = (server.url for server in two_processes.servers)
    secret: str = two_processes.secrets["HLJ0102-R1"]  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{a}/api/auth/login", json={"username": "op1", "password": "revocation-test-password"}
        ) as r:
            assert r.status == 200
            token = str((await r.json())["token"])
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{a}/api/auth/ticket", headers=bearer) as r:  # issued by A …
            ticket = str((await r.json())["ticket"])
        screen = await http.ws_connect(f"{b.replace('http', 'ws')}/api/screen/ws?ticket={ticket}")  # … used on B
        await screen.send_json({"type": "ping"})
        assert (await screen.receive_json(timeout=5))["type"] == "pong"
        with pytest.raises(aiohttp.WSServerHandshakeError):  # and only once, on either process
            await http.ws_connect(f"{a.replace('http', 'ws')}/api/screen/ws?ticket={ticket}")
        unit = await http.ws_connect(f"{b}/api/telemetry/ws", headers={"Authorization": f"Bearer {secret}"})
        await unit.send_json(fix(1))
        assert (await unit.receive_json(timeout=5))["stored"] == [1]

        async with http.post(f"{a}/api/auth/logout", headers=bearer) as r:  # logout on A closes B's screen
            assert r.status == 204
        assert await closed(screen) == (4401, "logged out")
        await asyncio.to_thread(two_processes.cli, "device", "revoke", "--id", "HLJ0102-R1")  # the CLI, via Redis
        assert await closed(unit) == (4401, "revoked")
    two_processes.stop()
    logs = "".join((two_processes.workdir / f"node-{n}.log").read_text() for n in (1, 2))
    assert "/api/screen/ws?ticket" in logs  # the access log ran, with names only
    for leaked in (token, ticket, secret, "cc_s_", "cc_d_", "cc_t_"):
        assert leaked not in logs


async def test_the_store_disables_and_enables_a_user(store: Store) -> None:
    """Both adapters (the store suites' SQLite and PostgreSQL)."""
    await store.upsert_court(Court(CourtId("HLJ"), "黑龙江省高级人民法院", CourtLevel.HIGH, None))
    user = await store.add_user(username="u1", display_name="u1", password_hash="x", role=Role.OPERATOR,
                                court_id=CourtId("HLJ"))  # fmt: skip
    await store.set_user_disabled(UserId(user.id), True)
    assert (await store.get_user(UserId(user.id))).disabled is True
    await store.set_user_disabled(UserId(user.id), False)
    assert (await store.get_user(UserId(user.id))).disabled is False
    with pytest.raises(NotFound):
        await store.set_user_disabled(UserId(424242), True)


# Pure parts, without a loop ---------------------------------------------------------------------------


def test_a_revocation_names_exactly_its_credentials() -> None:
    alice = Credential(session_hash="h1", user_id="7", expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    alice_elsewhere = Credential(session_hash="h2", user_id="7")
    unit = Credential(unit_id="HLJ0102-U01")
    logout = Revocation(Subject.SESSION, "h1", "logged out")
    disabled = Revocation(Subject.USER, "7", "disabled")
    stolen = Revocation(Subject.UNIT, "HLJ0102-U01", "revoked")
    assert [matches(c, logout) for c in (alice, alice_elsewhere, unit)] == [True, False, False]
    assert [matches(c, disabled) for c in (alice, alice_elsewhere, unit)] == [True, True, False]
    assert [matches(c, stolen) for c in (alice, alice_elsewhere, unit)] == [False, False, True]
    assert Revocation.from_event(stolen.as_event()) == stolen
    assert expired(alice, datetime(2026, 1, 1, tzinfo=UTC)) and not expired(unit, datetime(2100, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        Revocation.from_event({"subject": "everyone", "key": "x"})


def test_the_access_log_target_keeps_parameter_names_only() -> None:
    request = make_mocked_request("GET", "/api/screen/ws?ticket=cc_t_x&ticket=cc_t_y&since_ms=5&flag")
    assert safe_target(request) == "/api/screen/ws?ticket&since_ms&flag"
    assert safe_target(make_mocked_request("GET", "/api/units")) == "/api/units"


@given(
    params=st.lists(
        st.tuples(st.text(st.characters(codec="utf-8"), min_size=1, max_size=12), st.text(min_size=1, max_size=40)),
        max_size=5,
    )
)
def test_no_query_value_reaches_the_access_log(params: list[tuple[str, str]]) -> None:
    marked = [(name, f"SECRET{value}") for name, value in params]
    request = make_mocked_request("GET", "/api/x?" + urlencode(marked))
    assert "SECRET" not in safe_target(request) or any("SECRET" in name for name, _ in params)
