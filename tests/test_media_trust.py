"""Trust in live media (issue 12): an offer that cannot connect never costs a unit its working session, a new
session takes over only once connected, and one user or court cannot take every session. Real aiortc peers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from cluster.port import media_lease
from command_center.keys import CLUSTER, MEDIA
from config.settings import BusSettings, MediaSettings, Settings, StoreSettings
from core.ids import UnitId
from media.sessions import MediaHub
from persistence.models import Role
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World
from tests.media_support import SDP_HEADERS, UNIT, UnitPeer, ViewerPeer, eventually, loopback, mean_rgb
from tests.test_media_talkback import Operator

__all__ = ["loopback"]
pytestmark = pytest.mark.usefixtures("loopback")

RED, BLUE = (220, 30, 30), (30, 30, 220)


def hub(world: World) -> MediaHub:
    return world.client.app[MEDIA]


def media(**changes: object) -> MediaSettings:
    return Settings().media.model_copy(update=changes)


async def colour_seen(viewer: ViewerPeer, rgb: tuple[int, int, int]) -> bool:
    red, green, blue = mean_rgb((await viewer.frames("video", 3))[-1])
    return abs(red - rgb[0]) < 40 and abs(green - rgb[1]) < 40 and abs(blue - rgb[2]) < 40


async def streaming_with_a_viewer(world: World) -> tuple[UnitPeer, ViewerPeer]:
    unit = UnitPeer(world, channel=False, rgb=RED)
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch()
    assert await colour_seen(viewer, RED)
    await eventually(lambda: hub(world).publisher(UnitId(UNIT)) is not None
                     and hub(world).publisher(UnitId(UNIT)).connected_at is not None)  # type: ignore[union-attr]  # fmt: skip
    return unit, viewer


async def test_an_offer_without_a_fingerprint_is_refused_and_the_working_session_keeps_streaming(
    world: World,
) -> None:
    unit, viewer = await streaming_with_a_viewer(world)
    working = hub(world).publisher(UnitId(UNIT))
    intruder = UnitPeer(world, channel=False, rgb=BLUE)
    offer = re.sub(r"(?m)^a=fingerprint:.*\r?\n", "", await intruder.offer())
    response = await world.client.post("/api/whip", data=offer, headers={**world.auth("device"), **SDP_HEADERS})
    body = await response.json()
    assert response.status == 422, body
    assert body["error"]["code"] == "validation_failed"
    assert "has no DTLS fingerprint (a=fingerprint)" in body["error"]["message"]
    assert hub(world).publisher(UnitId(UNIT)) is working and hub(world).peer_connections == 2
    assert await colour_seen(viewer, RED)  # the viewer still watches the working session

    no_ice = re.sub(r"(?m)^a=ice-(ufrag|pwd):.*\r?\n", "", await intruder.offer())
    response = await world.client.post("/api/whip", data=no_ice, headers={**world.auth("device"), **SDP_HEADERS})
    assert response.status == 422 and "no ICE credentials" in (await response.json())["error"]["message"]
    assert hub(world).publisher(UnitId(UNIT)) is working and hub(world).peer_connections == 2
    assert await colour_seen(viewer, RED)
    for peer in (intruder, viewer, unit):
        await peer.close()


async def test_a_new_session_replaces_the_old_only_once_connected(world: World) -> None:
    old, viewer = await streaming_with_a_viewer(world)
    working = hub(world).publisher(UnitId(UNIT))
    new = UnitPeer(world, channel=False, rgb=BLUE)
    response = await world.client.post("/api/whip", data=await new.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201, await response.text()
    # Answered, not yet connected (the unit has not applied the answer): the old session goes on.
    assert hub(world).publisher(UnitId(UNIT)) is working and hub(world).peer_connections == 3
    assert await colour_seen(viewer, RED)
    assert hub(world).recording(UnitId(UNIT))

    await new.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
    await eventually(lambda: (p := hub(world).publisher(UnitId(UNIT))) is not None and p is not working,
                     what="the new session took over")  # fmt: skip
    assert response.headers["Location"].endswith(hub(world).publisher(UnitId(UNIT)).id)  # type: ignore[union-attr]
    await eventually(lambda: hub(world).peer_connections == 1, what="the old session and its viewer closed")
    assert hub(world).recording(UnitId(UNIT))  # recording carries on in the new session
    again = ViewerPeer(world)
    await again.watch()
    assert await colour_seen(again, BLUE)
    for peer in (old, new, viewer, again):
        await peer.close()


async def test_a_new_session_that_never_connects_leaves_the_old_one(make_world: AppFactory) -> None:
    world = await make_world(media=media(ice_timeout_seconds=1.0))
    old, viewer = await streaming_with_a_viewer(world)
    working = hub(world).publisher(UnitId(UNIT))
    silent = UnitPeer(world, channel=False, rgb=BLUE)
    response = await world.client.post("/api/whip", data=await silent.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201
    assert hub(world).peer_connections == 3
    await eventually(lambda: hub(world).peer_connections == 2, what="the unconnected session closed")
    assert hub(world).publisher(UnitId(UNIT)) is working
    assert await colour_seen(viewer, RED)
    gone = await world.client.delete(response.headers["Location"], headers=world.auth("device"))
    assert gone.status == 404
    for peer in (old, viewer, silent):
        await peer.close()


async def test_a_unit_has_one_session_connecting_at_a_time(world: World) -> None:
    old, viewer = await streaming_with_a_viewer(world)
    first, second = UnitPeer(world, channel=False), UnitPeer(world, channel=False)
    for peer in (first, second):
        response = await world.client.post("/api/whip", data=await peer.offer(),
                                           headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
        assert response.status == 201
    await eventually(lambda: hub(world).peer_connections == 3, what="the older connecting session closed")
    for peer in (old, first, second):
        await peer.close()
    await viewer.close()


async def watch(world: World, who: str) -> tuple[int, str, dict[str, str]]:
    """POST a real viewer's WHEP offer; the status, the body and the headers (the peer is closed at once)."""
    viewer = ViewerPeer(world)
    response = await world.client.post(f"/api/whep/{UNIT}", data=await viewer.offer(),
                                       headers={**world.auth(who), **SDP_HEADERS})  # fmt: skip
    await viewer.close()
    return response.status, await response.text(), dict(response.headers)


async def test_media_sessions_are_capped_per_user_and_per_court(make_world: AppFactory) -> None:
    world = await make_world(media=media(max_sessions_per_user=2, max_sessions_per_court=3, ice_timeout_seconds=15))
    await world.add_user("province", Role.OPERATOR, "HLJ")
    world.tokens["province"] = await world.login("province")
    unit = UnitPeer(world, channel=False)
    await unit.publish()

    first = (await watch(world, "operator"))[2]["Location"]
    assert (await watch(world, "operator"))[0] == 201
    status, text, headers = await watch(world, "operator")  # the operator's third
    assert status == 429, text
    assert '"too_many_requests"' in text and "limit 2 per user" in text and headers["Retry-After"] == "15"

    assert (await watch(world, "supervisor"))[0] == 201  # a colleague at the same court: the court's third
    status, text, headers = await watch(world, "admin")  # the court's fourth
    assert status == 429 and "court HLJ01 has 3 media sessions" in text and headers["Retry-After"] == "15"
    assert (await watch(world, "province"))[0] == 201  # another court's centre is not held back
    assert hub(world).peer_connections == 5

    ended = await world.client.delete(first, headers=world.auth("operator"))
    assert ended.status == 200
    assert (await watch(world, "admin"))[0] == 201  # a place freed in the court
    assert (await watch(world, "operator"))[0] == 429  # the court is full again
    await unit.close()


async def test_a_full_server_says_when_to_try_again(make_world: AppFactory) -> None:
    world = await make_world(media=media(max_sessions=1, ice_timeout_seconds=2.5))
    unit = UnitPeer(world, channel=False)
    await unit.publish()
    status, text, headers = await watch(world, "operator")
    assert status == 503 and "media sessions are full (1 on this server)" in text and headers["Retry-After"] == "3"
    await unit.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_across_processes_a_new_session_takes_the_unit_over_once_connected(
    make_world: AppFactory, pg_schema: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server processes on one PostgreSQL and Redis: the unit streams to the first; its new session
    reaching the second takes the unit's media lease (where viewers are sent) only once connected."""
    shared: dict[str, Any] = {"store": StoreSettings(url=POSTGRES_DSN, pool_min=1, pool_max=4), "schema": pg_schema,
                              "bus": BusSettings(url=REDIS_URL, namespace=redis_namespace)}  # fmt: skip
    monkeypatch.setenv("CC_CLUSTER__NODE_ID", "node-a")
    first = await make_world(**shared)
    monkeypatch.setenv("CC_CLUSTER__NODE_ID", "node-b")
    second = await make_world(**shared)
    second.tokens["device"] = first.device_secret
    lease, cluster = media_lease(UNIT), first.client.app[CLUSTER]

    old = UnitPeer(first, channel=False, rgb=RED)
    await old.publish()
    assert await cluster.holder(lease) == "node-a"
    new = UnitPeer(second, channel=False, rgb=BLUE)
    response = await second.client.post("/api/whip", data=await new.offer(),
                                        headers={**second.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201, await response.text()
    assert hub(second).publisher(UnitId(UNIT)) is None and await cluster.holder(lease) == "node-a"

    await new.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
    await eventually(lambda: hub(second).publisher(UnitId(UNIT)) is not None, what="the new session took over")
    async with asyncio.timeout(10):
        while await cluster.holder(lease) != "node-b":  # noqa: ASYNC110 (watching Redis from outside)
            await asyncio.sleep(0.05)
    for peer in (old, new):
        await peer.close()


async def test_talkback_counts_against_the_same_caps(make_world: AppFactory) -> None:
    world = await make_world(media=media(max_sessions_per_user=1))
    unit = UnitPeer(world, audio=True, talkback=True, channel=False)
    await unit.publish()
    assert (await watch(world, "operator"))[0] == 201
    operator = Operator(world)
    status, text = await operator.talk()
    assert status == 429 and "limit 1 per user" in text
    supervisor = Operator(world, role="supervisor")
    assert (await supervisor.talk())[0] == 201  # someone else may
    for pc in (operator.pc, supervisor.pc, unit.pc):
        await pc.close()
