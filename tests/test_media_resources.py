"""Bad input and resources: every refusal is a 4xx/5xx JSON error and leaves no peer connection behind;
connections that never connect or go silent are closed; the cap holds; shutdown closes everything."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiortc import RTCRtpSender, RTCSessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command_center.credentials import lookup_hash, new_device_secret
from command_center.keys import MEDIA
from core.ids import CourtId, UnitId
from media.sessions import MediaHub
from persistence.models import UnitKind
from tests.conftest import AppFactory, World
from tests.media_support import SDP_HEADERS, UNIT, UnitPeer, ViewerPeer, eventually, loopback, new_pc, prefer

__all__ = ["loopback"]
pytestmark = pytest.mark.usefixtures("loopback")


def hub(world: World) -> MediaHub:
    return world.client.app[MEDIA]


async def post_offer(world: World, path: str, body: str | bytes, who: str = "device",
                     content_type: str = "application/sdp") -> tuple[int, dict[str, Any]]:  # fmt: skip
    response = await world.client.post(path, data=body, headers={**world.auth(who), "Content-Type": content_type})
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


async def unit_offer(*, video: str | None = "video/VP8", audio: str | None = None, channel: bool = True) -> str:
    """An aiortc unit's offer, its peer connection closed at once."""
    pc = new_pc()
    try:
        if video is not None:
            prefer(pc.addTransceiver("video", direction="sendonly"), "video", video)
        if audio is not None:
            codecs = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == audio]
            pc.addTransceiver("audio", direction="sendonly").setCodecPreferences(codecs)
        if channel:
            pc.createDataChannel("telemetry")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_bad_offers_get_json_errors_and_leave_no_peer_connection(world: World) -> None:
    good = await unit_offer()
    cases: list[tuple[str | bytes, str, int, str]] = [
        ("hello", "application/sdp", 400, "bad_request"),
        (b"v=0\r\n\xff\xfe", "application/sdp", 400, "bad_request"),
        (good, "text/plain", 415, "unsupported_media_type"),
        (good, "application/json", 415, "unsupported_media_type"),
        (await unit_offer(video=None), "application/sdp", 422, "validation_failed"),  # data channel only
        (await unit_offer(video=None, audio="audio/PCMU"), "application/sdp", 422, "validation_failed"),
        (good.replace("a=sendonly", "a=recvonly"), "application/sdp", 422, "validation_failed"),
        (re.sub(r"a=ice-ufrag:.*\r\n", "", good), "application/sdp", 422, "validation_failed"),  # aiortc refuses
        (good + "a=x-padding:" + "x" * 70_000 + "\r\n", "application/sdp", 413, "payload_too_large"),
    ]
    for body, content_type, status, code in cases:
        got_status, got = await post_offer(world, "/api/whip", body, content_type=content_type)
        assert (got_status, got["error"]["code"]) == (status, code), (body[:80], got)
        assert hub(world).peer_connections == 0
    unsupported = await unit_offer(video=None, audio="audio/PCMU")
    _, refused = await post_offer(world, "/api/whip", unsupported)
    assert "send Opus" in refused["error"]["message"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.text(max_size=300) | st.binary(max_size=300))
async def test_garbage_never_leaves_a_peer_connection(world: World, garbage: str | bytes) -> None:
    status, body = await post_offer(world, "/api/whip", garbage)
    assert 400 <= status < 500 and body["error"]["code"]
    assert hub(world).peer_connections == 0


async def test_unknown_and_revoked_devices_are_refused(world: World) -> None:
    offer = await unit_offer()
    for token in ("cc_d_not-a-real-secret", "cc_s_not-a-session"):
        response = await world.client.post("/api/whip", data=offer,
                                           headers={"Authorization": f"Bearer {token}", **SDP_HEADERS})  # fmt: skip
        assert response.status == 401 and (await response.json())["error"]["code"] == "unauthenticated"
    await world.store.revoke_unit(UnitId(UNIT))
    status, body = await post_offer(world, "/api/whip", offer)
    assert status == 401 and "revoked" in body["error"]["message"]
    assert hub(world).peer_connections == 0


async def test_viewers_need_a_live_visible_unit_and_a_usable_offer(world: World) -> None:
    viewer = ViewerPeer(world)
    offer = await viewer.offer()
    status, body = await post_offer(world, f"/api/whep/{UNIT}", offer, who="operator")
    assert (status, body["error"]["code"]) == (409, "not_streaming")
    status, body = await post_offer(world, "/api/whep/HLJ0102-U99", offer, who="operator")
    assert (status, body["error"]["code"]) == (404, "not_found")
    await world.store.add_unit(unit_id=UnitId("HLJ1102-U01"), name="外地", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ1102"), secret_hash=lookup_hash(new_device_secret()))  # fmt: skip
    status, body = await post_offer(world, "/api/whep/HLJ1102-U01", offer, who="operator")
    assert (status, body["error"]["code"]) == (403, "forbidden")

    unit = UnitPeer(world, channel=False)
    await unit.publish()
    audio_only = ViewerPeer(world, kinds=("audio",))
    status, body = await post_offer(world, f"/api/whep/{UNIT}", await audio_only.offer(), who="operator")
    assert (status, body["error"]["code"]) == (422, "validation_failed")
    h264_only = ViewerPeer(world)
    prefer(h264_only.pc.getTransceivers()[0], "video", "video/H264")
    status, body = await post_offer(world, f"/api/whep/{UNIT}", await h264_only.offer(), who="supervisor")
    assert (status, body["error"]["code"]) == (422, "validation_failed")
    assert "video/VP8" in body["error"]["message"]
    status, body = await post_offer(world, f"/api/whep/{UNIT}", "v=0\r\nnonsense", who="admin")
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert hub(world).peer_connections == 1  # the unit's only

    await viewer.watch()
    other = await world.client.delete(viewer.location, headers=world.auth("supervisor"))  # not the supervisor's
    assert other.status == 404
    mine = await world.client.delete(viewer.location, headers=world.auth("operator"))
    assert mine.status == 200
    for peer in (viewer, audio_only, h264_only, unit):
        await peer.close()


async def test_sessions_are_capped(make_world: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_MEDIA__MAX_SESSIONS", "1")
    world = await make_world()
    unit = UnitPeer(world, channel=False)
    await unit.publish()
    status, body = await post_offer(world, f"/api/whep/{UNIT}", await ViewerPeer(world).offer(), who="operator")
    assert (status, body["error"]["code"]) == (503, "unavailable")
    assert "full" in body["error"]["message"] and hub(world).peer_connections == 1
    await unit.close()


async def test_a_peer_that_never_connects_is_closed(make_world: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_MEDIA__ICE_TIMEOUT_SECONDS", "1")
    world = await make_world()
    unit = UnitPeer(world)
    response = await world.client.post("/api/whip", data=await unit.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201  # … but the unit never applies the answer
    assert hub(world).peer_connections == 1
    await eventually(lambda: hub(world).peer_connections == 0, within=5)
    assert hub(world).publisher(UnitId(UNIT)) is None
    await unit.close()


async def test_a_unit_that_goes_silent_is_closed_with_its_viewers(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC_MEDIA__SILENCE_TIMEOUT_SECONDS", "1")
    world = await make_world()
    unit = UnitPeer(world, channel=False)
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch()
    await viewer.frames("video", 2)
    unit.pc.getTransceivers()[0].sender.replaceTrack(None)  # the camera stops; the connection stays up
    await eventually(lambda: hub(world).peer_connections == 0, within=6)
    await viewer.close()
    await unit.close()


async def test_shutdown_closes_every_peer_connection(world: World) -> None:
    unit = UnitPeer(world, channel=True)
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch()
    media = hub(world)
    assert media.peer_connections == 2
    await world.client.close()  # runs the cleanup contexts
    assert media.peer_connections == 0 and media.publisher(UnitId(UNIT)) is None
    await viewer.close()
    await unit.close()


async def test_a_viewer_offer_for_an_answer_applies(world: World) -> None:
    """The answer to a WHEP offer is one aiortc accepts as is (setup passive, loopback candidate)."""
    unit = UnitPeer(world, channel=False)
    await unit.publish()
    viewer = ViewerPeer(world)
    response = await world.client.post(f"/api/whep/{UNIT}", data=await viewer.offer(),
                                       headers={**world.auth("admin"), **SDP_HEADERS})  # fmt: skip
    answer = await response.text()
    assert response.status == 201 and "a=setup:passive" in answer and "a=sendonly" in answer
    assert re.fullmatch(rf"/api/whep/{UNIT}/[A-Za-z0-9_-]{{20,}}", response.headers["Location"])
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await viewer.frames("video", 1)
    await viewer.close()
    await unit.close()


async def test_a_sessions_close_frees_it_once_however_often_and_concurrently_it_is_called() -> None:
    from media.frames import KeyframeRequests
    from media.peers import Publisher, WebRtcLink
    from media.table import Role, SessionId
    from persistence.models import Unit

    link = WebRtcLink(new_pc())
    closes = 0
    close_pc = link.pc.close

    async def counted_close() -> None:
        nonlocal closes
        closes += 1
        await close_pc()

    link.close = counted_close  # type: ignore[method-assign]
    unit = Unit(UnitId(UNIT), "U01", UnitKind.BODY_CAMERA, CourtId("HLJ0102"), None, datetime.now(UTC))
    publisher = Publisher(id=SessionId("s"), role=Role.PUBLISHER, unit_id=unit.id, created=0.0, unit=unit, link=link,
                          media={"video": "video/VP8"}, keyframes=KeyframeRequests(1.0, lambda: 0.0))  # fmt: skip
    publisher.own(publisher.keyframe_requests(), "keyframes")
    await asyncio.gather(publisher.close(), publisher.close())
    await publisher.close()
    assert closes == 1 and link.pc.connectionState == "closed" and not publisher.tasks
