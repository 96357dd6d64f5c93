"""Live tracking end to end: a real unit socket in, real screen sockets out, the store as the record."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
import websockets
from aiohttp import ClientWebSocketResponse, WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command_center.keys import HUB, TRACKER
from command_center.screens.connection import BYE_GRACE_SECONDS
from config.settings import BusSettings, StoreSettings, TrackingSettings
from core.ids import UnitId
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World

UNIT = UnitId("HLJ0102-U01")
TOPIC = "units.HLJ0102"


def fix(seq: int, *, age_ms: int = 0, lat: float = 45.75, lon: float = 126.64, sos: bool = False) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {"seq": seq, "fix_time_ms": now - age_ms, "lat": lat, "lon": lon, "accuracy_m": 5.0,
            "speed_mps": 1.2, "heading_deg": 90.0, "battery_pct": 80, "sos": sos}  # fmt: skip


class Screen:
    """A screen socket read the way a wall display reads it."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []  # everything received, in order
        self._unread: list[dict[str, Any]] = []  # received but not yet returned by next()

    async def next(self, kind: str, within: float = 5.0, **match: Any) -> dict[str, Any]:
        """The oldest message not yet returned that has this type (and these fields)."""
        async with asyncio.timeout(within):
            while True:
                for data in self._unread:
                    if data["type"] == kind and all(data.get(k) == v for k, v in match.items()):
                        self._unread.remove(data)
                        return data
                message = await self.ws.receive()
                assert message.type == WSMsgType.TEXT, f"socket ended: {message}"
                self.messages.append(message.json())
                self._unread.append(self.messages[-1])

    async def unit_update(self, unit_id: str, predicate: Any, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                frame = await self.next("frame", within=within)
                for view in frame["units"]:
                    if view["unit_id"] == unit_id and predicate(view):
                        return dict(view)


async def open_screen(world: World, role: str = "operator", *topics: str, resume: dict[str, int] | None = None
                      ) -> Screen:  # fmt: skip
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth(role))
    screen = Screen(ws)
    await ws.send_json({"type": "subscribe", "topics": list(topics or ("units", "alarms")), "resume": resume or {}})
    await screen.next("subscribed")
    return screen


async def open_unit(world: World) -> ClientWebSocketResponse:
    return await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"))


async def send(unit: ClientWebSocketResponse, payload: Any) -> dict[str, Any]:
    """Send one message and return the server's answer to it (tasks pushed meanwhile are skipped)."""
    await unit.send_json(payload)
    while True:
        answer: dict[str, Any] = await asyncio.wait_for(unit.receive_json(), 5)
        if answer.get("type") not in ("task", "task_cancelled"):
            return answer


async def test_a_unit_appears_and_moves_on_the_screen(world: World) -> None:
    screen = await open_screen(world)
    snapshot = await screen.next("snapshot", topic=TOPIC)
    assert [u["unit_id"] for u in snapshot["units"]] == [UNIT]
    assert snapshot["units"][0]["status"] == "offline" and snapshot["units"][0]["position"] is None

    unit = await open_unit(world)
    ack = await send(unit, fix(1, lat=45.750))
    assert ack == {"type": "ack", "stored": [1], "duplicates": [], "rejected": []}
    first = await screen.unit_update(UNIT, lambda v: v["position"] is not None)
    assert first["status"] == "available" and first["position"]["lat"] == 45.750
    await send(unit, fix(2, lat=45.760))
    moved = await screen.unit_update(UNIT, lambda v: v["position"]["seq"] == 2)
    assert moved["position"]["lat"] == 45.760
    frames = [m for m in screen.messages if m["type"] == "frame" and m["topic"] == TOPIC]
    seqs = [m["seq"] for m in frames]
    assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(seqs)))  # no gaps
    assert await world.store.count_positions(UNIT) == 2


async def test_replayed_backlog_is_stored_once_and_fills_the_track(world: World) -> None:
    """A unit offline for 5 minutes uploads its backlog (twice): no loss, no duplicate, trail filled in."""
    unit = await open_unit(world)
    await send(unit, fix(1, age_ms=301_000))
    screen = await open_screen(world)
    await screen.next("snapshot", topic=TOPIC)
    backlog = [fix(seq, age_ms=300_000 - (seq - 2) * 1000, lat=45.70 + seq * 1e-4) for seq in range(2, 302)]
    headers = world.auth("device")
    first = await world.client.post("/api/telemetry/batch", json={"positions": backlog}, headers=headers)
    ack = await first.json()
    assert first.status == 200 and ack["stored"] == list(range(2, 302)) and ack["duplicates"] == []
    again = await world.client.post("/api/telemetry/batch", json={"positions": backlog}, headers=headers)
    assert (await again.json())["duplicates"] == list(range(2, 302))
    assert await world.store.count_positions(UNIT) == 301

    points: list[list[float]] = []
    async with asyncio.timeout(5):
        while len(points) < 299:
            frame = await screen.next("frame")
            for track in frame["track"]:
                points.extend(track["points"])
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    latest = await world.store.latest_positions([UNIT])
    assert latest[UNIT].seq == 301


async def test_bad_telemetry_is_refused_precisely_and_the_good_is_kept(world: World) -> None:
    unit = await open_unit(world)
    answer = await send(unit, [fix(1), fix(2, lat=123.0), fix(3) | {"unit_id": "HLJ0103-U07"}, fix(4)])
    assert answer["stored"] == [1, 4]
    assert [(r["index"], r["seq"]) for r in answer["rejected"]] == [(1, 2), (2, 3)]
    assert "lat" in answer["rejected"][0]["message"] and "credential" in answer["rejected"][1]["message"]
    await unit.send_str("{not json")
    assert (await unit.receive_json())["code"] == "invalid_json"
    await unit.send_bytes(b"\x00\x01")
    assert (await unit.receive_json())["code"] == "bad_request"
    assert (await send(unit, "hello"))["code"] == "validation_failed"
    assert (await send(unit, fix(5)))["stored"] == [5]  # the connection survived all of it
    big = await world.client.post("/api/telemetry/batch", json={"positions": "nope"}, headers=world.auth("device"))
    assert big.status == 422


async def test_an_oversized_message_closes_the_unit_socket_with_1009(world: World) -> None:
    unit = await open_unit(world)
    await unit.send_str("[" + ",".join(["1"] * 200_000) + "]")
    message = await asyncio.wait_for(unit.receive(), 5)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert unit.close_code == 1009


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["seq", "lat", "lon", "fix_time_ms", "x"]), c),
    max_leaves=10), min_size=1, max_size=5))  # fmt: skip
async def test_fuzzed_telemetry_never_kills_the_connection(world: World, junk: list[Any]) -> None:
    unit = await open_unit(world)
    for item in junk:
        answer = await send(unit, item)
        assert answer["type"] in ("ack", "error")
    probe_seq = 10**12 + len(junk)
    assert (await send(unit, fix(probe_seq)))["type"] == "ack"
    await unit.close()


async def test_a_screen_resumes_without_a_gap(world: World) -> None:
    unit = await open_unit(world)
    screen = await open_screen(world)
    snapshot = await screen.next("snapshot", topic=TOPIC)
    await send(unit, fix(1))
    frame = await screen.next("frame", topic=TOPIC)
    last = frame["seq"]
    await screen.ws.close()
    for seq in range(2, 6):
        await send(unit, fix(seq, lat=45.75 + seq / 1000))
        await asyncio.sleep(0.15)  # one tick each: several frames are missed
    back = await open_screen(world, "operator", "units", resume={TOPIC: last})
    missed: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while not missed or missed[-1]["units"][-1]["position"]["seq"] < 5:
            missed.append(await back.next("frame", topic=TOPIC))
    assert [m["seq"] for m in missed] == list(range(last + 1, last + 1 + len(missed)))
    assert not [m for m in back.messages if m["type"] == "snapshot" and m["topic"] == TOPIC]
    assert snapshot["seq"] < last


async def test_a_screen_whose_history_is_gone_gets_a_fresh_snapshot(world: World) -> None:
    screen = await open_screen(world, "operator", "units", resume={TOPIC: 999_999})
    snapshot = await screen.next("snapshot", topic=TOPIC)
    assert snapshot["seq"] < 999_999 and snapshot["units"][0]["unit_id"] == UNIT


async def test_a_stalled_screen_is_dropped_and_does_not_slow_the_others(make_world: AppFactory) -> None:
    """A wall display that stops reading while a unit uploads a large backlog is disconnected and told where
    to resume; a healthy screen gets every point of the backlog meanwhile."""
    world = await make_world(tracking=TrackingSettings(screen_queue_frames=8))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((world.client.host, world.client.port))
    url = f"ws://{world.client.host}:{world.client.port}/api/screen/ws"
    stalled = await websockets.connect(url, sock=sock, compression=None, max_queue=1, ping_interval=None,
                                       additional_headers=world.auth("operator"))  # fmt: skip
    await stalled.send(json.dumps({"type": "subscribe", "topics": ["units"]}))
    healthy = await open_screen(world, "supervisor", "units")
    hub = world.client.app[HUB]
    assert hub.screens == 2
    batches, per_batch = 60, 5000  # ~13 MB of frames: more than the kernel buffers of a stalled socket hold

    async def read_healthy() -> int:
        """Every backlog position reaches the healthy screen: as trail points or as the live position."""
        fixes: set[int] = set()
        while len(fixes) < batches * per_batch:
            frame = await healthy.next("frame", within=30)
            fixes.update(p[0] for t in frame["track"] for p in t["points"])
            fixes.update(v["position"]["fix_time_ms"] for v in frame["units"] if v["position"])
        return len(fixes)

    reader = asyncio.create_task(read_healthy())
    for b in range(batches):  # each batch becomes one large track frame (~200 kB)
        backlog = [fix(b * per_batch + i + 1, age_ms=600_000 - b * per_batch - i) for i in range(per_batch)]
        reply = await world.client.post(
            "/api/telemetry/batch", json={"positions": backlog}, headers=world.auth("device")
        )
        assert len((await reply.json())["stored"]) == per_batch
    assert await asyncio.wait_for(reader, 30) == batches * per_batch
    async with asyncio.timeout(BYE_GRACE_SECONDS + 3):
        while hub.screens != 1:  # noqa: ASYNC110 (polling the server from outside, as a monitor would)
            await asyncio.sleep(0.1)
    messages = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                messages.append(json.loads(await stalled.recv()))
    # The bye travels only if the stalled socket can still carry it; otherwise the connection is cut.
    if closed.value.rcvd is not None:
        assert closed.value.rcvd.code == 4008
        assert messages[-1]["type"] == "bye" and messages[-1]["code"] == "too_slow"
        assert TOPIC in messages[-1]["resume"]
    assert len(messages) < 100
    async with asyncio.timeout(5):  # the metrics count the dropped screen once its handler has finished
        while hub.too_slow_screens != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    scraped = await (await world.client.get("/metrics", headers=world.auth("admin"))).text()
    assert "cc_screens_too_slow_total 1.0" in scraped
    dropped = next(line for line in scraped.splitlines() if line.startswith("cc_screen_messages_dropped_total "))
    assert float(dropped.split()[1]) >= 8  # at least the full queue it could not take


async def test_silence_marks_the_unit_offline_with_an_alarm(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(offline_after_seconds=0.4))
    screen = await open_screen(world)
    unit = await open_unit(world)
    await send(unit, fix(1))
    await screen.unit_update(UNIT, lambda v: v["status"] == "available")
    offline = await screen.unit_update(UNIT, lambda v: v["status"] == "offline", within=5)
    assert offline["last_seen_ms"] is not None
    alarm = await screen.next("alarm", event="raised")
    assert alarm["alarm"]["kind"] == "offline" and alarm["alarm"]["state"] == "open" and alarm["alarm"]["active"]
    await send(unit, fix(2))
    await screen.unit_update(UNIT, lambda v: v["status"] == "available")
    back = await screen.next("alarm", event="cleared")  # back online: the system closes it
    assert back["alarm"]["id"] == alarm["alarm"]["id"] and back["alarm"]["state"] == "resolved"
    assert back["alarm"]["closed_by"] is None and back["alarm"]["closed_ms"] is not None


async def test_sos_raises_an_alarm_until_an_operator_clears_it(world: World) -> None:
    screen = await open_screen(world)
    unit = await open_unit(world)
    await send(unit, fix(1, sos=True))
    alarm = (await screen.next("alarm", event="raised"))["alarm"]
    assert {k: alarm[k] for k in ("kind", "state", "active", "unit_id", "name", "court_id")} == {
        "kind": "sos",
        "state": "open",
        "active": True,
        "unit_id": UNIT,
        "name": "道里一号",
        "court_id": "HLJ0102",
    }
    await screen.unit_update(UNIT, lambda v: v["status"] == "sos")
    await send(unit, fix(2))  # no flag: SOS stays until cleared
    judge = await world.client.post(f"/api/units/{UNIT}/clear-sos", headers=world.auth("judge"))
    assert judge.status == 403
    cleared = await world.client.post(f"/api/units/{UNIT}/clear-sos", headers=world.auth("operator"))
    assert cleared.status == 200 and (await cleared.json())["status"] == "available"
    cleared_alarm = (await screen.next("alarm", event="cleared"))["alarm"]  # an SOS waits for a person to close it
    assert cleared_alarm["state"] == "open" and not cleared_alarm["active"]
    again = await world.client.post(f"/api/units/{UNIT}/clear-sos", headers=world.auth("operator"))
    assert again.status == 409


async def test_an_online_unit_moves_its_last_seen_and_raises_sos_in_a_later_message(world: World) -> None:
    """A message from a unit already online only moves when it was last heard (the tracker's shortcut past the
    status machine); one carrying the SOS flag still goes through it and raises the alarm."""
    tracker = world.client.app[TRACKER]
    screen = await open_screen(world)
    unit = await open_unit(world)
    await send(unit, fix(1))
    first = tracker.state(UNIT)
    assert first.online and first.last_seen_ms is not None
    await asyncio.sleep(0.01)
    assert (await send(unit, fix(2)))["stored"] == [2]
    second = tracker.state(UNIT)
    assert second.last_seen_ms is not None and second.last_seen_ms > first.last_seen_ms
    assert (second.online, second.sos, second.duty) == (first.online, first.sos, first.duty)
    await send(unit, fix(3, sos=True))
    alarm = (await screen.next("alarm", event="raised"))["alarm"]
    assert alarm["kind"] == "sos" and alarm["unit_id"] == UNIT
    await screen.unit_update(UNIT, lambda v: v["status"] == "sos")
    assert tracker.state(UNIT).sos


async def test_duty_changes_show_on_the_screen(world: World) -> None:
    screen = await open_screen(world)
    unit = await open_unit(world)
    await send(unit, fix(1))
    response = await world.client.post(
        f"/api/units/{UNIT}/duty", json={"duty": "en_route"}, headers=world.auth("operator")
    )
    assert (await response.json())["status"] == "en_route"
    await screen.unit_update(UNIT, lambda v: v["status"] == "en_route")
    bad = await world.client.post(f"/api/units/{UNIT}/duty", json={"duty": "flying"}, headers=world.auth("operator"))
    assert bad.status == 422


async def test_screens_see_only_their_jurisdiction(world: World) -> None:
    from persistence.models import Role

    await world.add_user("heihe", Role.OPERATOR, "HLJ11")
    world.tokens["heihe"] = await world.login("heihe")
    other = await open_screen(world, "heihe", "units")
    assert not [m for m in other.messages if m.get("topic") == TOPIC]
    await other.ws.send_json({"type": "subscribe", "topics": [f"unit:{UNIT}"]})
    refused = await other.next("error")
    assert refused["code"] == "forbidden"
    await other.ws.send_json({"type": "subscribe", "topics": ["everything"]})
    assert (await other.next("error"))["code"] == "bad_request"
    await other.ws.send_str("[]")
    assert (await other.next("error"))["code"] == "bad_request"
    await other.ws.send_json({"type": "ping"})
    assert (await other.next("pong"))["type"] == "pong"


async def test_one_unit_subscription(world: World) -> None:
    screen = await open_screen(world, "supervisor", f"unit:{UNIT}")
    snapshot = await screen.next("snapshot")
    assert snapshot["topic"] == f"unit:{UNIT}" and [u["unit_id"] for u in snapshot["units"]] == [UNIT]
    unit = await open_unit(world)
    await send(unit, fix(1))
    frame = await screen.next("frame")
    assert frame["topic"] == f"unit:{UNIT}" and frame["units"][0]["position"]["seq"] == 1


@pytest.mark.postgres
@pytest.mark.redis
async def test_live_tracking_on_postgres_and_redis(
    make_world: AppFactory, pg_schema: str, redis_namespace: str
) -> None:
    world = await make_world(
        store=StoreSettings(url=POSTGRES_DSN),
        bus=BusSettings(url=REDIS_URL, namespace=redis_namespace),
        schema=pg_schema,
    )
    screen = await open_screen(world)
    await screen.next("snapshot", topic=TOPIC)
    unit = await open_unit(world)
    for seq in range(1, 4):
        assert (await send(unit, fix(seq, lat=45.7 + seq / 100)))["stored"] == [seq]
    await screen.unit_update(UNIT, lambda v: v["position"] and v["position"]["seq"] == 3)
    backlog = [fix(s, age_ms=10_000 - s) for s in range(4, 104)]
    reply = await world.client.post("/api/telemetry/batch", json={"positions": backlog + backlog[:5]},
                                    headers=world.auth("device"))  # fmt: skip
    assert (await reply.json())["rejected"][0]["message"].endswith("repeated in this batch")
    assert await world.store.count_positions(UNIT) == 103


async def test_a_unit_can_have_its_own_offline_silence(world: World) -> None:
    """The default is 60 s; a unit registered with 0.3 s goes offline on its own schedule."""
    created = await world.client.post(
        "/api/units", headers=world.auth("admin"),
        json={"id": "HLJ0102-Q1", "name": "快速离线", "kind": "handheld", "court_id": "HLJ0102",
              "offline_after_seconds": 0.3},
    )  # fmt: skip
    body = await created.json()
    assert created.status == 201 and body["unit"]["offline_after_seconds"] == 0.3
    screen = await open_screen(world, "operator", "units")
    quick = await world.client.ws_connect("/api/telemetry/ws", headers={"Authorization": f"Bearer {body['secret']}"})
    slow = await open_unit(world)
    await send(quick, fix(1))
    await send(slow, fix(1))
    offline = await screen.unit_update("HLJ0102-Q1", lambda v: v["status"] == "offline", within=5)
    assert offline["last_seen_ms"] is not None
    assert world.client.app[TRACKER].view(UNIT)["status"] == "available"
    bad = await world.client.post(
        "/api/units", headers=world.auth("admin"),
        json={"id": "HLJ0102-Q2", "name": "x", "kind": "handheld", "court_id": "HLJ0102", "offline_after_seconds": 0},
    )  # fmt: skip
    assert bad.status == 422


TOPICS = st.sampled_from(["units", "alarms", "tasks", "operations", "unit:HLJ0102-U01", "unit:NOPE", "query:x",
                          "query:", "unit:", "", "units.HLJ0102", "🚓"])  # fmt: skip
RESUME = st.one_of(
    st.dictionaries(TOPICS, st.integers() | st.text(max_size=3) | st.none(), max_size=3),
    st.lists(st.integers()),
    st.text(max_size=4),
)
SUBSCRIBE_LIKE = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "ping", "unsubscribe", "", 7, None])},
    optional={"topics": st.one_of(st.lists(TOPICS, max_size=4), st.text(max_size=5), st.integers(), st.none()),
              "resume": RESUME},
)  # fmt: skip
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c),
    max_leaves=6,
)
SCREEN_JUNK = st.one_of(SUBSCRIBE_LIKE, ANY_JSON)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(SCREEN_JUNK, min_size=1, max_size=4))
async def test_fuzzed_screen_messages_never_kill_the_connection(world: World, junk: list[Any]) -> None:
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth("operator"))
    screen = Screen(ws)
    for item in junk:
        await ws.send_json(item)
        await ws.send_json({"type": "ping"})
        await screen.next("pong")  # every message was answered in turn and the socket is alive
    errors = [m for m in screen.messages if m["type"] == "error"]
    assert all(m["code"] != "internal" for m in errors), errors
    await ws.close()
