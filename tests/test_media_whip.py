"""WHIP ingest and WHEP viewing end to end: real aiortc peers on loopback, the running app in between."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from command_center.keys import MEDIA
from core.ids import UnitId
from media import passthrough
from media.peers import WebRtcLink
from media.sessions import MediaHub
from tests.conftest import World
from tests.media_support import HEIGHT, UNIT, WIDTH, UnitPeer, ViewerPeer, eventually, loopback, mean_rgb

__all__ = ["loopback"]
pytestmark = pytest.mark.usefixtures("loopback")


def fix(seq: int, *, lat: float = 45.75) -> dict[str, Any]:
    return {"seq": seq, "fix_time_ms": int(time.time() * 1000), "lat": lat, "lon": 126.64, "accuracy_m": 5.0}


def hub(world: World) -> MediaHub:
    return world.client.app[MEDIA]


async def test_a_unit_publishes_and_its_telemetry_channel_is_the_tracker(world: World) -> None:
    unit = UnitPeer(world)
    await unit.publish()
    assert unit.location.startswith("/api/whip/") and len(unit.location) > len("/api/whip/") + 16
    assert "a=setup:passive" in unit.answer and "a=setup:active" not in unit.answer
    assert "127.0.0.1" in unit.answer
    video = unit.answer.split("m=video", 1)[1].split("m=", 1)[0]
    assert "VP8/90000" in video and "H264" not in video  # one codec per kind, the unit's first

    assert await unit.send(fix(1)) == {"type": "ack", "stored": [1], "duplicates": [], "rejected": []}
    assert await unit.send([fix(1), fix(2, lat=45.76)]) == {
        "type": "ack", "stored": [2], "duplicates": [1], "rejected": []}  # fmt: skip
    assert await world.store.count_positions(UnitId(UNIT)) == 2
    assert hub(world).publisher(UnitId(UNIT)) is not None and hub(world).peer_connections == 1

    response = await world.client.delete(unit.location, headers=world.auth("device"))
    assert response.status == 200
    assert hub(world).publisher(UnitId(UNIT)) is None and hub(world).peer_connections == 0
    again = await world.client.delete(unit.location, headers=world.auth("device"))
    assert again.status == 404 and (await again.json())["error"]["code"] == "not_found"
    await unit.close()


async def test_the_data_channel_answers_exactly_as_the_websocket(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish()
    ws = await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"))
    messages: list[Any] = [fix(7), "not json {", fix(8, lat=200.0), [fix(n) for n in range(100, 601)], 42]
    for message in messages:
        over_channel = await unit.send(message)
        if isinstance(message, str):
            await ws.send_str(message)
        else:
            await ws.send_json(message)
        over_socket = await asyncio.wait_for(ws.receive_json(), 5)
        if over_channel.get("type") == "ack" and over_channel["stored"]:  # the socket saw it second: a duplicate
            assert over_socket == {**over_channel, "stored": [], "duplicates": over_channel["stored"]}
        else:
            assert over_socket == over_channel, message
    assert (await unit.send(fix(7)))["duplicates"] == [7]
    await ws.close()
    await unit.close()


async def test_viewers_receive_the_units_own_video_and_audio_without_transcoding(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8", audio=True, rgb=(30, 160, 220))
    await unit.publish()
    first, second = ViewerPeer(world, kinds=("video", "audio")), ViewerPeer(world)
    await first.watch(role="operator")
    await second.watch(role="supervisor")
    assert len(hub(world).viewers_of(UnitId(UNIT))) == 2 and hub(world).peer_connections == 3

    for viewer in (first, second):
        frames = await viewer.frames("video", 5)
        assert all((f.width, f.height) == (WIDTH, HEIGHT) for f in frames)
        red, green, blue = mean_rgb(frames[-1])
        assert abs(red - 30) < 25 and abs(green - 160) < 25 and abs(blue - 220) < 25
    sound = await first.frames("audio", 3)
    assert all(f.sample_rate == 48_000 for f in sound)

    publisher = hub(world).publisher(UnitId(UNIT))
    assert publisher is not None
    assert publisher.decoded_frames == 0  # the server decoded nothing …
    assert isinstance(publisher.link, WebRtcLink)
    assert passthrough.tapped_frames(publisher.link.receivers["video"]) > 5
    for session in hub(world).viewers_of(UnitId(UNIT)):
        for sender in session.pc.getSenders():
            assert not passthrough.sender_encoded(sender)  # … and encoded nothing

    response = await world.client.delete(first.location, headers=world.auth("operator"))
    assert response.status == 200
    assert len(hub(world).viewers_of(UnitId(UNIT))) == 1
    entries = await world.store.audit_entries()
    views = [e for e in entries if e.action.startswith("media.view")]
    assert [e.action for e in views] == ["media.view.start", "media.view.start", "media.view.end"]
    operator = await world.store.find_user("operator")
    assert operator is not None and views[2].actor_id == operator.id
    ended = views[2].details
    assert ended["unit_id"] == UNIT and ended["username"] == "operator" and ended["media"] == ["audio", "video"]
    assert 0 < ended["started_ms"] <= ended["ended_ms"]

    await unit.close()  # the unit goes away: its remaining viewer is closed with it
    await eventually(lambda: hub(world).peer_connections == 0, within=15)
    assert [e.action for e in await world.store.audit_entries() if e.action.startswith("media.view")][-1] == (
        "media.view.end"
    )
    await first.close()
    await second.close()


async def test_h264_is_forwarded_too(world: World) -> None:
    unit = UnitPeer(world, video="video/H264", rgb=(230, 220, 40))
    await unit.publish()
    assert "H264/90000" in unit.answer and "VP8" not in unit.answer
    viewer = ViewerPeer(world)
    await viewer.watch()
    frames = await viewer.frames("video", 3)
    assert (frames[-1].width, frames[-1].height) == (WIDTH, HEIGHT)
    red, green, blue = mean_rgb(frames[-1])
    assert abs(red - 230) < 25 and abs(green - 220) < 25 and abs(blue - 40) < 30
    publisher = hub(world).publisher(UnitId(UNIT))
    assert publisher is not None and publisher.decoded_frames == 0
    await viewer.close()
    await unit.close()


async def test_publishing_again_replaces_the_units_session(world: World) -> None:
    old = UnitPeer(world, channel=False)
    await old.publish()
    new = UnitPeer(world, channel=False)
    await new.publish()
    # The new session takes over once connected (the server may see that a moment after the unit).
    await eventually(lambda: (p := hub(world).publisher(UnitId(UNIT))) is not None and new.location.endswith(p.id))
    await eventually(lambda: hub(world).peer_connections == 1)
    gone = await world.client.delete(old.location, headers=world.auth("device"))
    assert gone.status == 404
    await old.close()
    await new.close()


async def test_revoking_the_device_ends_its_live_session_and_refuses_it_again(world: World) -> None:
    unit = UnitPeer(world, channel=False)
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch()
    revoked = await world.client.post(f"/api/units/{UNIT}/revoke", headers=world.auth("admin"))
    assert revoked.status == 200
    await eventually(lambda: hub(world).publisher(UnitId(UNIT)) is None, what="the session ended")
    await eventually(lambda: hub(world).peer_connections == 0, what="the viewer went with it")
    stolen = UnitPeer(world, channel=False)
    again = await world.client.post("/api/whip", data=await stolen.offer(),
                                    headers={**world.auth("device"), "Content-Type": "application/sdp"})  # fmt: skip
    assert again.status == 401
    await stolen.close()
    await unit.close()
    await viewer.close()
