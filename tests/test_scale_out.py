"""Two server processes behind nginx, sharing a real PostgreSQL and Redis, met the way users meet them.

A unit reporting to one process shows on a screen of the other with the same sequence numbers, and the
screen resumes without a gap when it moves from one process to the other; a command given on either
process changes the unit on both; an offline unit raises one alarm, not one per process; a viewer
reaching the other process sees the unit's video; a client claiming to be a forwarding process is refused;
a room member's view of the room's pinned unit ends when they leave through the other process; killing a
process (-9) loses and doubles no position and its leadership passes to the survivor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiortc import AudioStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.cluster import NGINX, Cluster
from bench.harness import free_port, fresh_store_url
from command_center.forwarding import FORWARDED_BY, hop_headers
from config.settings import StoreSettings
from core.ids import UnitId
from field_device.client import TelemetryClient
from field_device.media_unit import MediaUnit
from persistence.factory import build_store
from tests.media_support import SDP_HEADERS, ColourCamera, connected, loopback, new_pc
from tests.query_support import simulator_process
from tests.test_field_client import fix_now
from tests.test_live_tracking import Screen, fix

pytestmark = pytest.mark.skipif(not NGINX.exists(), reason="needs nginx (Debian package nginx; setup.sh --dev)")

PASSWORD = "cluster-operator-password"
UNIT = "HLJ0102-C1"
PINNED = "HLJ0103-P1"  # Nangang's: outside op1's court (Daoli), watched only through a room
PARTNER = "HLJ0102-P2"  # Daoli's unit in the same cross-court operation (never connects)
QUIET = [f"HLJ0102-Q{n}" for n in range(1, 7)]  # units that fall silent
__all__ = ["loopback"]  # the fixture, used by the media test


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def agencies(workdir: Path) -> Iterator[Path]:
    """Two partner agencies as a simulator process both server processes reach: a slow bank, a quick registry."""
    file = workdir / "agencies.toml"
    tables = []
    for agency_id, name, kind, latency in (("bank", "慢银行", "bank", 4000), ("land", "不动产登记", "real_estate", 50)):
        tables.append(f'[[agency]]\nid = "{agency_id}"\nname = "{name}"\nkind = "{kind}"\n'
                      f'endpoint = "http://127.0.0.1:{free_port()}"\napi_key = "sim-{agency_id}"\n'
                      f"timeout_seconds = 8.0\nsimulator = {{ latency_median_ms = {latency}, "
                      "latency_sigma = 0 }\n")  # fmt: skip
    file.write_text("\n".join(tables))
    with simulator_process(file):
        yield file


@pytest.fixture(scope="module")
def cluster(workdir: Path, agencies: Path) -> Iterator[Cluster]:
    store_url = asyncio.run(fresh_store_url("postgres", workdir, "cc_scale_out_test"))
    settings = {"CC_TRACKING__OFFLINE_AFTER_SECONDS": "30", "CC_QUERIES__AGENCIES_FILE": str(agencies),
                "CC_QUERIES__DEADLINE_SECONDS": "20"}  # fmt: skip
    cluster = Cluster(workdir, processes=2, store_url=store_url, env=settings)
    cluster.init()
    cluster.add_user("op1", "operator", PASSWORD)
    cluster.add_user("op2", "operator", PASSWORD)  # a third centre in a consultation room
    cluster.add_user("judge1", "judge", PASSWORD, court="HLJ0102")
    cluster.add_user("sup1", "supervisor", PASSWORD, court="HLJ0102")  # registers the judge's case
    cluster.add_user("sup01", "supervisor", PASSWORD, court="HLJ01")  # hosts a room pinning another court's unit
    cluster.secrets = {unit: cluster.add_device(unit) for unit in (UNIT, "HLJ0102-C2", "HLJ0102-C3", "HLJ0102-C4")}  # type: ignore[attr-defined]
    cluster.secrets[PINNED] = cluster.add_device(PINNED, court="HLJ0103")  # type: ignore[attr-defined]
    cluster.secrets[PARTNER] = cluster.add_device(PARTNER)  # type: ignore[attr-defined]
    for quiet in QUIET:
        cluster.secrets[quiet] = cluster.add_device(quiet, offline_after=2)  # type: ignore[attr-defined]
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def login(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(f"{base}/api/auth/login", json={"username": "op1", "password": PASSWORD}) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["token"])


async def ticket(http: aiohttp.ClientSession, base: str, token: str) -> str:
    """A single-use WebSocket ticket, as a browser page gets one."""
    async with http.post(f"{base}/api/auth/ticket", headers={"Authorization": f"Bearer {token}"}) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["ticket"])


async def screen_on(http: aiohttp.ClientSession, base: str, token: str, resume: dict[str, int] | None = None) -> Screen:
    ws = await http.ws_connect(f"{base}/api/screen/ws", headers={"Authorization": f"Bearer {token}"})
    screen = Screen(ws)
    await ws.send_json({"type": "subscribe", "topics": ["units", "alarms"], "resume": resume or {}})
    await screen.next("subscribed")
    return screen


async def unit_socket(http: aiohttp.ClientSession, base: str, secret: str) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(f"{base}/api/telemetry/ws", headers={"Authorization": f"Bearer {secret}"})


async def send(ws: aiohttp.ClientWebSocketResponse, payload: Any) -> dict[str, Any]:
    await ws.send_json(payload)
    while True:
        answer: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 10)
        if answer.get("type") == "ack":
            return answer


async def test_a_unit_on_one_process_is_live_on_a_screen_of_the_other(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    async with session() as http:
        token = await login(http, b)
        screen = await screen_on(http, b, token)
        snapshot = await screen.next("snapshot", topic="units.HLJ0102")
        unit = await unit_socket(http, a, cluster.secrets[UNIT])  # type: ignore[attr-defined]
        for seq in range(1, 4):
            assert (await send(unit, fix(seq, lat=45.75 + seq / 1000)))["stored"] == [seq]
            await screen.unit_update(UNIT, lambda v, s=seq: v["position"]["seq"] == s, within=10)
        frames = [m for m in screen.messages if m["type"] == "frame" and m["topic"] == "units.HLJ0102"]
        seqs = [m["seq"] for m in frames]
        assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(seqs)))  # gapless, the bus's numbers
        last = seqs[-1]
        await screen.ws.close()

        for seq in range(4, 7):  # while the screen is away, then it comes back through the other process
            assert (await send(unit, fix(seq, lat=45.76 + seq / 1000)))["stored"] == [seq]
        await asyncio.sleep(0.5)
        moved = await screen_on(http, a, token, resume={"units.HLJ0102": last})
        replayed = await moved.next("frame", topic="units.HLJ0102", within=10)
        assert replayed["seq"] == last + 1  # resumed where it left off: no snapshot, no gap
        assert not [m for m in moved.messages if m["type"] == "snapshot" and m["topic"] == "units.HLJ0102"]
        await moved.unit_update(UNIT, lambda v: v["position"]["seq"] == 6, within=10)
        await unit.close()


async def test_a_page_served_through_nginx_opens_its_socket_through_nginx(cluster: Cluster) -> None:
    """Browsers send the page's origin with a socket; through the proxy it must still match this server."""
    async with session() as http:
        token = await login(http, cluster.url)
        async with http.get(f"{cluster.url}/wall") as page:
            assert page.status == 200
        # As the page does: a ticket (which nginx may take to either process), then the socket with it.
        ws = await http.ws_connect(f"{cluster.url}/api/screen/ws?ticket={await ticket(http, cluster.url, token)}",
                                   headers={"Origin": cluster.url})  # fmt: skip
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=5))["type"] == "pong"
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{cluster.url}/api/screen/ws?ticket={await ticket(http, cluster.url, token)}",
                                  headers={"Origin": "http://x.example"})  # fmt: skip


async def test_a_command_on_either_process_changes_the_unit_on_both(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    async with session() as http:
        token = await login(http, a)
        auth = {"Authorization": f"Bearer {token}"}
        unit = await unit_socket(http, a, cluster.secrets["HLJ0102-C2"])  # type: ignore[attr-defined]
        await send(unit, fix(1))
        # B learns that A heard the unit within a tick, as the wall shows it (docs/scale-out.md: one tick)
        await _eventually(lambda: _status(http, b, auth, "HLJ0102-C2"), "available")
        async with http.post(f"{b}/api/units/HLJ0102-C2/duty", json={"duty": "en_route"}, headers=auth) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["status"] == "en_route"
        await send(unit, fix(2, sos=True))  # the unit's own process raises SOS on top of B's change
        for base in (a, b):
            await _eventually(lambda base=base: _status(http, base, auth, "HLJ0102-C2"), "sos")
        async with http.post(f"{b}/api/units/HLJ0102-C2/clear-sos", headers=auth) as answer:
            assert answer.status == 200, await answer.text()
        for base in (a, b):
            await _eventually(lambda base=base: _status(http, base, auth, "HLJ0102-C2"), "en_route")
        await unit.close()


async def test_a_geofence_drawn_on_one_process_watches_units_reporting_to_the_other(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    square = [[[126.700, 45.700], [126.710, 45.700], [126.710, 45.706], [126.700, 45.706], [126.700, 45.700]]]
    fence = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
             "properties": {"name": "跨进程禁入区", "kind": "no_go", "court_id": "HLJ0102"}}  # fmt: skip
    async with session() as http:
        auth = {"Authorization": f"Bearer {await login(http, b)}"}
        async with http.post(f"{b}/api/geofences", json=fence, headers=auth) as answer:
            assert answer.status == 201, await answer.text()
        await asyncio.sleep(0.5)  # node-1 hears of the change on the bus
        unit = await unit_socket(http, a, cluster.secrets["HLJ0102-C4"])  # type: ignore[attr-defined]
        for n in range(5):  # well inside, fixes 2 s apart: a crossing (3 fixes over 5 s)
            await send(unit, fix(1 + n, age_ms=(10 - 2 * n) * 1000, lat=45.703, lon=126.705))
        await unit.close()

        async def geofence_alarms() -> list[str]:
            async with http.get(f"{b}/api/alarms", headers=auth) as answer:
                return [x["details"].get("fence") for x in (await answer.json())["alarms"] if x["kind"] == "geofence"]

        await _eventually(geofence_alarms, ["跨进程禁入区"])


async def test_silent_units_are_marked_offline_once_by_the_leader(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.servers)
    async with session() as http:
        auth = {"Authorization": f"Bearer {await login(http, a)}"}
        for n, quiet in enumerate(QUIET):  # heard by both processes, then silent
            unit = await unit_socket(http, (a, b)[n % 2], cluster.secrets[quiet])  # type: ignore[attr-defined]
            await send(unit, fix(1))
            await unit.close()
        for quiet in QUIET:
            await _eventually(lambda quiet=quiet: _status(http, a, auth, quiet), "offline", within=15)
        await asyncio.sleep(3)  # time for a second sweeper, if there were one, to mark them too
        async with http.get(f"{b}/api/alarms", headers=auth) as answer:
            alarms = sorted(x["subject"] for x in (await answer.json())["alarms"] if x["subject"] in QUIET)
        assert alarms == QUIET  # one offline alarm each
    # Every process publishes the unit changes it makes on the bus: the leader alone marked them offline.
    redis = aioredis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        leader = await redis.get(f"{cluster.namespace}:lease:leader")
        entries = await redis.xrange(f"{cluster.namespace}:stream:unit_states")
    finally:
        await redis.aclose()
    events = [orjson.loads(fields["d"]) for _, fields in entries or [] if fields]
    marked = sorted((unit_id, event["node"]) for event in events for unit_id, delta in event["units"].items()
                    if delta.get("online") is False)  # fmt: skip
    assert marked == [(quiet, leader) for quiet in QUIET]


async def test_failed_logins_are_counted_across_processes(cluster: Cluster) -> None:
    """Five wrong passwords spread over both processes lock the username on both (not five per process)."""
    servers = [s.url for s in cluster.servers]
    async with session() as http:
        for n in range(5):
            async with http.post(f"{servers[n % 2]}/api/auth/login",
                                 json={"username": "guessed", "password": f"wrong guess {n}"}) as answer:  # fmt: skip
                assert answer.status == 401
        for base in servers:
            async with http.post(f"{base}/api/auth/login", json={"username": "guessed", "password": "x" * 12}) as a:
                assert a.status == 429, await a.text()


async def test_a_viewer_on_the_other_process_watches_the_unit(cluster: Cluster, loopback: None) -> None:
    a, b = (s.url for s in cluster.servers)
    unit = MediaUnit(a, cluster.secrets["HLJ0102-C3"], talkback=False, label="C3")  # type: ignore[attr-defined]
    await unit.start()
    viewer = new_pc()
    try:
        async with session() as http:
            auth = {"Authorization": f"Bearer {await login(http, b)}"}
            await _eventually(lambda: _streaming(http, b, auth), ["HLJ0102-C3"], within=20)
            viewer.addTransceiver("video", direction="recvonly")
            tracks: asyncio.Queue[Any] = asyncio.Queue()
            viewer.on("track", tracks.put_nowait)
            await viewer.setLocalDescription(await viewer.createOffer())
            async with http.post(f"{b}/api/whep/HLJ0102-C3", data=viewer.localDescription.sdp,
                                 headers={**auth, **SDP_HEADERS}) as answer:  # fmt: skip
                assert answer.status == 201, await answer.text()
                location = answer.headers["Location"]
                sdp = await answer.text()
            await viewer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            await connected(viewer)
            track = await asyncio.wait_for(tracks.get(), 10)
            frames = [await asyncio.wait_for(track.recv(), 15) for _ in range(5)]
            assert frames[0].width == 640 and frames[0].height == 480
            async with http.delete(f"{b}{location}", headers=auth) as ended:  # ends on A, through B
                assert ended.status == 200, await ended.text()
    finally:
        await viewer.close()
        await unit.close()


async def test_a_room_publishing_on_one_process_is_viewed_muted_and_left_through_the_other(
    cluster: Cluster, loopback: None
) -> None:
    """The room's first publish (on A) makes A its media home; the host's view, mute, a third member's join,
    publish and logout, and the member's leave, all sent to B, reach A's SFU: the video decodes, the audio
    stops at the viewer, the room's events keep who publishes, the streams end."""
    a, b = (s.url for s in cluster.servers)
    publisher, viewer, third = new_pc(), new_pc(), new_pc()
    third.addTransceiver(AudioStreamTrack(), direction="sendonly")
    publisher.addTransceiver(ColourCamera((40, 200, 40)), direction="sendonly")
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    counted = {"audio": 0, "video": 0}
    counting: list[asyncio.Task[None]] = []

    async def count(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                counted[track.kind] += 1

    viewer.on("track", lambda track: counting.append(asyncio.ensure_future(count(track))))
    try:
        async with session() as http:
            host = {"Authorization": f"Bearer {await _login(http, b, 'sup1')}"}
            member = {"Authorization": f"Bearer {await _login(http, a, 'op1')}"}
            async with http.get(f"{a}/api/me", headers=member) as answer:
                member_id = (await answer.json())["user"]["id"]
            other = {"Authorization": f"Bearer {await _login(http, b, 'op2')}"}
            async with http.get(f"{b}/api/me", headers=other) as answer:
                other_id = (await answer.json())["user"]["id"]
            case = {"case_number": "(2026)黑0102执31号", "title": "会商案", "judge_ids": [],
                    "parties": [{"kind": "person", "name": "李四", "identifier": "11010519491231002X"}]}  # fmt: skip
            async with http.post(f"{b}/api/cases", json=case, headers=host) as answer:
                assert answer.status == 201, await answer.text()
                case_id = (await answer.json())["id"]
            opened = {"title": "跨进程会商", "case_id": case_id, "invited": [member_id, other_id]}
            async with http.post(f"{b}/api/rooms", headers=host, json=opened) as answer:
                assert answer.status == 201, await answer.text()
                room_id = (await answer.json())["room"]["id"]
            async with http.post(f"{a}/api/rooms/{room_id}/join", headers=member) as answer:
                assert answer.status == 200, await answer.text()

            await publisher.setLocalDescription(await publisher.createOffer())
            async with http.post(f"{a}/api/rooms/{room_id}/media/publish", data=publisher.localDescription.sdp,
                                 headers={**member, **SDP_HEADERS}) as answer:  # fmt: skip
                assert answer.status == 201, await answer.text()
                published = answer.headers["Location"]
                await publisher.setRemoteDescription(RTCSessionDescription(sdp=await answer.text(), type="answer"))
            await connected(publisher)
            await _eventually(lambda: _publishing(http, b, host, room_id, member_id), ["audio", "video"])
            await _forged_hops_are_refused(http, cluster, b, member, room_id, member_id)

            viewer.addTransceiver("video", direction="recvonly")
            viewer.addTransceiver("audio", direction="recvonly")
            await viewer.setLocalDescription(await viewer.createOffer())
            view = f"{b}/api/rooms/{room_id}/media/participants/{member_id}/view"
            async with http.post(view, data=viewer.localDescription.sdp, headers={**host, **SDP_HEADERS}) as answer:
                assert answer.status == 201, await answer.text()  # B has no such source: A answered
                await viewer.setRemoteDescription(RTCSessionDescription(sdp=await answer.text(), type="answer"))
            await connected(viewer)
            await _until(lambda: counted["audio"] > 25 and counted["video"] > 5, "the member's audio and video")

            async with http.post(f"{b}/api/rooms/{room_id}/mute", headers=host,
                                 json={"user_id": member_id, "muted": True}) as answer:  # fmt: skip
                assert answer.status == 200, await answer.text()
            drained = counted["video"] + 30  # video keeps flowing from the same source: it counts the time
            await _until(lambda: counted["video"] >= drained, "video after the mute")
            at_mute = counted["audio"]
            later = counted["video"] + 60
            await _until(lambda: counted["video"] >= later, "more video while muted")
            assert counted["audio"] == at_mute, "muted audio still reaches the viewer"

            # A join through B is the home's: the room's event says who joined and still who publishes.
            async with http.ws_connect(f"{b}/api/screen/ws", headers=host) as ws:
                await ws.send_json({"type": "subscribe", "topics": [f"room:{room_id}"]})
                async with http.post(f"{b}/api/rooms/{room_id}/join", headers=other) as answer:
                    assert answer.status == 200, await answer.text()
                async with asyncio.timeout(20):
                    while True:
                        message = await ws.receive_json()
                        members = {m["user_id"]: m for m in message.get("members", [])}
                        if message["type"] == "room" and members.get(other_id, {}).get("present"):
                            break
                assert members[member_id]["publishing"] == ["audio", "video"], message
            # A publish through B goes to the home; logging out through B ends it there.
            await third.setLocalDescription(await third.createOffer())
            async with http.post(f"{b}/api/rooms/{room_id}/media/publish", data=third.localDescription.sdp,
                                 headers={**other, **SDP_HEADERS}) as answer:  # fmt: skip
                assert answer.status == 201, await answer.text()
                await third.setRemoteDescription(RTCSessionDescription(sdp=await answer.text(), type="answer"))
            await connected(third)
            await _eventually(lambda: _publishing(http, a, host, room_id, other_id), ["audio"])
            async with http.post(f"{b}/api/auth/logout", headers=other) as answer:
                assert answer.status == 204, await answer.text()
            await _eventually(lambda: _publishing(http, b, host, room_id, other_id), [])

            async with http.post(f"{b}/api/rooms/{room_id}/leave", headers=member) as answer:
                assert answer.status == 200, await answer.text()
            await _eventually(lambda: _publishing(http, b, host, room_id, member_id), [])
            await _until(lambda: all(task.done() for task in counting), "the view ends with the source")
            async with http.delete(f"{b}{published}", headers=member) as answer:  # ended on A already
                assert answer.status == 404, await answer.text()
            async with http.post(f"{b}/api/rooms/{room_id}/close", headers=host) as answer:
                assert answer.status == 200, await answer.text()
    finally:
        for task in counting:
            task.cancel()
        for pc in (third, viewer, publisher):
            await pc.close()


async def test_a_pinned_unit_view_on_one_process_ends_when_the_member_leaves_or_the_room_closes_through_the_other(
    cluster: Cluster, loopback: None
) -> None:
    """Nangang's unit streams on A; Daoli's operator watches it on A only because a room pins it. Their leave,
    and later the host's close, both answered by B, end that view on A."""
    a, b = (s.url for s in cluster.servers)
    unit = MediaUnit(a, cluster.secrets[PINNED], talkback=False, label="P1")  # type: ignore[attr-defined]
    await unit.start()
    viewers: list[Any] = []
    try:
        async with session() as http:
            host = {"Authorization": f"Bearer {await _login(http, b, 'sup01')}"}
            member = {"Authorization": f"Bearer {await _login(http, a, 'op1')}"}
            async with http.get(f"{a}/api/me", headers=member) as answer:
                member_id = (await answer.json())["user"]["id"]
            # a room pins only a unit of its courts: an operation of the intermediate court with a unit of each
            plan = {"kind": "search", "title": "跨区联合搜查", "court_id": "HLJ01", "onsite_commander": "王警官",
                    "target": {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150},
                    "unit_ids": [PINNED, PARTNER]}  # fmt: skip
            async with http.post(f"{b}/api/operations", json=plan, headers=host) as answer:
                assert answer.status == 201, await answer.text()
                operation_id = (await answer.json())["operation"]["id"]
            opened = {"title": "跨区会商", "operation_id": operation_id, "unit_id": PINNED, "invited": [member_id]}
            async with http.post(f"{b}/api/rooms", headers=host, json=opened) as answer:
                assert answer.status == 201, await answer.text()
                room_id = (await answer.json())["room"]["id"]
            await _eventually(lambda: _streaming(http, a, host), [PINNED], within=20)

            async def watch_on_a() -> asyncio.Task[None]:
                """Join the room and watch the pinned unit on A; the task ends when the view ends."""
                async with http.post(f"{a}/api/rooms/{room_id}/join", headers=member) as answer:
                    assert answer.status == 200, await answer.text()
                viewer = new_pc()
                viewers.append(viewer)
                viewer.addTransceiver("video", direction="recvonly")
                tracks: asyncio.Queue[Any] = asyncio.Queue()
                viewer.on("track", tracks.put_nowait)
                await viewer.setLocalDescription(await viewer.createOffer())
                async with http.post(f"{a}/api/whep/{PINNED}", data=viewer.localDescription.sdp,
                                     headers={**member, **SDP_HEADERS}) as answer:  # fmt: skip
                    assert answer.status == 201, await answer.text()
                    sdp = await answer.text()
                await viewer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                await connected(viewer)
                track = await asyncio.wait_for(tracks.get(), 10)
                await asyncio.wait_for(track.recv(), 15)

                async def drain() -> None:
                    with contextlib.suppress(MediaStreamError):
                        while True:
                            await track.recv()

                return asyncio.ensure_future(drain())

            watching = await watch_on_a()
            async with http.post(f"{b}/api/rooms/{room_id}/leave", headers=member) as answer:
                assert answer.status == 200, await answer.text()
            await _until(watching.done, "the view on A ends when the member leaves through B")

            watching = await watch_on_a()
            async with http.post(f"{b}/api/rooms/{room_id}/close", headers=host) as answer:
                assert answer.status == 200, await answer.text()
            await _until(watching.done, "the view on A ends when the host closes the room through B")
    finally:
        for viewer in viewers:
            await viewer.close()
        await unit.close()


async def test_a_query_runs_once_and_is_finished_by_the_survivor_when_its_process_dies(cluster: Cluster) -> None:
    """Each asset query runs in one process (its lease): with both alive, every agency is asked once; when the
    process running a query is killed, the other takes it over and completes it by its deadline."""
    a, b = (s.url for s in cluster.servers)
    async with session() as http:
        async with http.post(f"{b}/api/auth/login", json={"username": "judge1", "password": PASSWORD}) as answer:
            auth = {"Authorization": f"Bearer {(await answer.json())['token']}"}
        async with http.get(f"{b}/api/me", headers=auth) as answer:
            judge_id = (await answer.json())["user"]["id"]
        async with http.post(f"{b}/api/auth/login", json={"username": "sup1", "password": PASSWORD}) as answer:
            registrar = {"Authorization": f"Bearer {(await answer.json())['token']}"}
        case = {"case_number": "(2026)黑0102执9号", "title": "借款合同纠纷执行", "judge_ids": [judge_id],
                "parties": [{"kind": "person", "name": "张三", "identifier": "11010519491231002X"}]}  # fmt: skip
        async with http.post(f"{b}/api/cases", json=case, headers=registrar) as answer:
            assert answer.status == 201, await answer.text()
            case_id = (await answer.json())["id"]

        async def submit(base: str) -> dict[str, Any]:
            async with http.post(f"{base}/api/queries", json={"case_id": case_id, "reason": "查控被执行人财产"},
                                 headers=auth) as answer:  # fmt: skip
                assert answer.status == 202, await answer.text()
                return dict(await answer.json())

        async def finished(query_id: str) -> dict[str, Any]:
            for _ in range(300):
                async with http.get(f"{b}/api/queries/{query_id}", headers=auth) as answer:
                    query: dict[str, Any] = await answer.json()
                if query["complete"] and all(j["status"] != "pending" for j in query["jobs"]):
                    return query
                await asyncio.sleep(0.1)
            raise AssertionError(f"query {query_id} never finished: {query}")

        both_alive = await finished((await submit(b))["id"])
        assert {j["status"] for j in both_alive["jobs"]} <= {"answered", "no_assets"}
        assert [j["attempts"] for j in both_alive["jobs"]] == [1, 1]  # node-1 looked for queries to take: none

        orphan = await submit(a)
        await asyncio.sleep(0.5)  # the slow bank is being asked by node-1 ...
        cluster.kill(0)  # ... which dies
        done = await finished(orphan["id"])
        assert {j["status"] for j in done["jobs"]} <= {"answered", "no_assets"}, done  # nothing timed out
        assert max(j["answered_ms"] for j in done["jobs"]) <= done["deadline_ms"]
        bank = next(j for j in done["jobs"] if j["agency_id"] == "bank")
        assert bank["attempts"] == 2  # asked again by node-2 (same Idempotency-Key), after node-1's lease lapsed


async def test_killing_a_process_loses_nothing_and_the_survivor_leads(workdir: Path) -> None:
    store_url = await fresh_store_url("postgres", workdir, "cc_scale_out_kill_test")
    cluster = Cluster(workdir / "kill", processes=2, store_url=store_url)
    await asyncio.to_thread(cluster.init)
    cluster.add_user("op1", "operator", PASSWORD)
    secrets = {u: cluster.add_device(u, offline_after=2) for u in ("HLJ0102-K1", "HLJ0102-K2", "HLJ0102-K3")}
    clients = [TelemetryClient(cluster.url, secret, label=u, backoff=(0.1, 0.5)) for u, secret in secrets.items()]
    try:
        await cluster.start()
        for client in clients:
            await client.start()
        for n in range(30):
            for client in clients:
                client.record(fix_now(lat=45.75 + n / 10_000))
            await asyncio.sleep(0.02)
        cluster.kill(0)  # -9, whichever units it held
        for n in range(30, 80):  # the units keep recording; those cut off reconnect through nginx to node-2
            for client in clients:
                client.record(fix_now(lat=45.75 + n / 10_000))
            await asyncio.sleep(0.02)
        for client in clients:
            await asyncio.wait_for(client.drained(), 30)
        await clients[2].close()  # silent from now on: the survivor, now the leader, must mark it offline
        async with session() as http:
            survivor = cluster.servers[1].url
            auth = {"Authorization": f"Bearer {await login(http, survivor)}"}
            await _eventually(lambda: _status(http, survivor, auth, "HLJ0102-K3"), "offline", within=20)
    finally:
        for client in clients:
            await client.close()
        cluster.stop()
    store = build_store(StoreSettings(url=store_url))
    await store.open()
    try:
        for unit in secrets:
            assert await store.count_positions(UnitId(unit)) == 80  # none lost, none twice
    finally:
        await store.close()


# helpers --------------------------------------------------------------------------------------------------
async def _forged_hops_are_refused(
    http: aiohttp.ClientSession, cluster: Cluster, b: str, member: dict[str, str], room_id: str, member_id: int
) -> None:
    """A client claiming a forward (no MAC, a guessed secret, a stale or another request's MAC, a MAC made for
    another credential) is refused on B and B does not answer for A's room: the member stays present and
    publishing. A hop signed with the cluster's secret is honoured once (B answers itself: it knows nobody
    publishing); the same hop sent again is refused."""
    leave = f"/api/rooms/{room_id}/leave"
    store = build_store(StoreSettings(url=cluster.env["CC_STORE__URL"]))
    await store.open()
    try:
        secret = await store.cluster_secret()
    finally:
        await store.close()
    forged = [{FORWARDED_BY: "node-b"}, hop_headers("guessed", "POST", leave, "node-b"),
              hop_headers(secret, "POST", leave, "node-b", now=time.time() - 120),
              hop_headers(secret, "GET", f"/api/rooms/{room_id}", "node-b")]  # fmt: skip
    for headers in forged:
        async with http.post(f"{b}{leave}", headers={**member, **headers}) as answer:
            assert answer.status == 403, await answer.text()
    async with http.get(f"{b}/api/rooms/{room_id}", headers=member) as answer:
        members = {m["user_id"]: m for m in (await answer.json())["room"]["members"]}
    assert members[member_id]["present"] and members[member_id]["publishing"] == ["audio", "video"], members
    unsigned_for = hop_headers(secret, "GET", f"/api/rooms/{room_id}", "node-b", "Bearer someone-else")
    async with http.get(f"{b}/api/rooms/{room_id}", headers={**member, **unsigned_for}) as answer:
        assert answer.status == 403, "a hop signed for another credential"
    signed = hop_headers(secret, "GET", f"/api/rooms/{room_id}", "node-b", member["Authorization"])
    async with http.get(f"{b}/api/rooms/{room_id}", headers={**member, **signed}) as answer:
        assert answer.status == 200, await answer.text()
        members = {m["user_id"]: m for m in (await answer.json())["room"]["members"]}
    assert members[member_id]["publishing"] == [], "a signed hop is answered where it arrives"
    async with http.get(f"{b}/api/rooms/{room_id}", headers={**member, **signed}) as answer:
        assert answer.status == 403, "the same hop sent again (a replay) is refused"
        assert "already handled" in (await answer.json())["error"]["message"]


async def _status(http: aiohttp.ClientSession, base: str, auth: dict[str, str], unit: str) -> str:
    async with http.get(f"{base}/api/units/{unit}/live", headers=auth) as answer:
        return str((await answer.json())["status"])


async def _streaming(http: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> list[str]:
    async with http.get(f"{base}/api/media/streaming", headers=auth) as answer:
        return list((await answer.json())["unit_ids"])


async def _login(http: aiohttp.ClientSession, base: str, username: str) -> str:
    async with http.post(f"{base}/api/auth/login", json={"username": username, "password": PASSWORD}) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["token"])


async def _publishing(
    http: aiohttp.ClientSession, base: str, auth: dict[str, str], room_id: str, user_id: int
) -> list[str]:
    async with http.get(f"{base}/api/rooms/{room_id}", headers=auth) as answer:
        assert answer.status == 200, await answer.text()
        members = (await answer.json())["room"]["members"]
        return [kind for m in members if m["user_id"] == user_id for kind in m["publishing"]]


async def _until(predicate: Any, what: str, within: float = 30.0) -> None:
    """Until a count the peers keep reaches its mark (a failure names what never came)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (aiortc counts in callbacks)
            await asyncio.sleep(0.05)
    assert predicate(), what


async def _eventually(probe: Any, expected: Any, within: float = 10.0) -> None:
    seen = None
    for _ in range(int(within / 0.2) + 1):
        if (seen := await probe()) == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {expected!r}, still {seen!r} after {within} s")
