"""WHIP (RFC 9725) and WHEP to the letter: one test per requirement, against the running app with real aiortc
peers on loopback. Each test names the section it checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest
from aiortc import RTCSessionDescription

from command_center.keys import MEDIA
from core.ids import UnitId
from field_device.ice_restart import ice_connection
from media.sessions import MediaHub
from tests.conftest import AppFactory, World
from tests.media_support import (
    SDP_HEADERS,
    UNIT,
    UnitPeer,
    ViewerPeer,
    connected,
    eventually,
    handover,
    loopback,
)

__all__ = ["loopback"]
pytestmark = pytest.mark.usefixtures("loopback")

SDPFRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}
ORIGIN = "https://wall.court.example"
CANDIDATE = "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"


def hub(world: World) -> MediaHub:
    return world.client.app[MEDIA]


async def publishing(world: World, **kwargs: object) -> UnitPeer:
    unit = UnitPeer(world, **kwargs)  # type: ignore[arg-type]
    await unit.publish()
    return unit


# §4.2: endpoint and session URLs ----------------------------------------------------------------------


async def test_options_on_the_endpoints_say_they_take_sdp_offers_without_a_credential(world: World) -> None:
    for path in ("/api/whip", f"/api/whep/{UNIT}", f"/api/talk/{UNIT}"):  # talkback: the same rules (extension)
        response = await world.client.options(path)
        assert response.status == 204, path
        assert response.headers["Accept-Post"] == "application/sdp"
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "POST"}
        assert "Access-Control-Allow-Origin" not in response.headers  # no origin configured


async def test_options_on_a_session_says_it_takes_trickle_ice_patches(world: World) -> None:
    unit = await publishing(world)
    response = await world.client.options(unit.location)
    assert response.status == 204
    assert response.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "PATCH", "DELETE"}
    await unit.close()


async def test_options_on_a_talkback_session_says_it_takes_trickle_ice_patches(world: World) -> None:
    """The talkback resource (a private extension, docs/protocols.md) answers OPTIONS like a WHEP session."""
    response = await world.client.options(f"/api/talk/{UNIT}/some-session")
    assert response.status == 204
    assert response.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "PATCH", "DELETE"}
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_only_for_configured_origins(make_world: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_MEDIA__CORS_ORIGINS", f'["{ORIGIN}"]')
    world = await make_world()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    allowed = await world.client.options("/api/whip", headers=preflight)
    assert allowed.status == 204 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "If-Match" in allowed.headers["Access-Control-Allow-Headers"]
    other = await world.client.options("/api/whip", headers={**preflight, "Origin": "https://evil.example"})
    assert other.status == 204 and "Access-Control-Allow-Origin" not in other.headers
    for path in (f"/api/talk/{UNIT}", f"/api/talk/{UNIT}/some-session"):  # talkback: the same origins only
        talk = await world.client.options(path, headers=preflight)
        assert talk.status == 204 and talk.headers["Access-Control-Allow-Origin"] == ORIGIN, path
        assert "If-Match" in talk.headers["Access-Control-Allow-Headers"]
        evil = await world.client.options(path, headers={**preflight, "Origin": "https://evil.example"})
        assert evil.status == 204 and "Access-Control-Allow-Origin" not in evil.headers, path
    # The actual requests carry it too, errors included, and expose the headers a client must read.
    refused = await world.client.post("/api/whip", data="v=0", headers={**SDP_HEADERS, "Origin": ORIGIN})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    unit = UnitPeer(world)
    created = await world.client.post("/api/whip", data=await unit.offer(),
                                      headers={**world.auth("device"), **SDP_HEADERS, "Origin": ORIGIN})  # fmt: skip
    assert created.status == 201 and created.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {"Location", "ETag", "Link"} <= {
        h.strip() for h in created.headers["Access-Control-Expose-Headers"].split(",")
    }
    await unit.close()


async def test_get_head_and_put_on_an_endpoint_are_405(world: World) -> None:
    for path in ("/api/whip", f"/api/whep/{UNIT}", f"/api/talk/{UNIT}"):
        for method in ("GET", "HEAD", "PUT"):
            response = await world.client.request(method, path, headers=world.auth("operator"))
            assert response.status == 405, f"{method} {path}"
            assert "POST" in response.headers["Allow"]


async def test_get_head_post_and_put_on_a_session_are_405(world: World) -> None:
    unit = await publishing(world)
    viewer = ViewerPeer(world)
    await viewer.watch()
    for location, who in ((unit.location, "device"), (viewer.location, "operator")):
        for method in ("GET", "HEAD", "POST", "PUT"):
            response = await world.client.request(method, location, headers=world.auth(who))
            assert response.status == 405, f"{method} {location}"
            assert "PATCH" in response.headers["Allow"] and "DELETE" in response.headers["Allow"]
    await viewer.close()
    await unit.close()


async def test_201_carries_the_session_url_and_an_etag(world: World) -> None:
    unit = UnitPeer(world)
    response = await world.client.post("/api/whip", data=await unit.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    assert response.status == 201 and response.content_type == "application/sdp"
    assert response.headers["Location"].startswith("/api/whip/")
    assert re.fullmatch(r'"[A-Za-z0-9_-]{8,}"', response.headers["ETag"])  # a strong entity-tag
    assert response.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    await unit.close()


# §4.5: bundled answers -------------------------------------------------------------------------------


async def test_bundled_answers_are_rtcp_mux_only(world: World) -> None:
    unit = await publishing(world, audio=True)
    sections = unit.answer.split("\nm=")[1:]
    assert "a=group:BUNDLE" in unit.answer and len(sections) == 3  # video, audio, data channel
    rtp = [s for s in sections if s.startswith(("video", "audio"))]
    assert all("a=rtcp-mux\r\na=rtcp-mux-only\r\n" in s for s in rtp)
    await unit.close()


# §4.6: ICE servers -----------------------------------------------------------------------------------


async def test_link_headers_name_the_ice_servers_with_time_limited_turn_credentials(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CC_MEDIA__ICE_SERVERS", '["stun:stun.court.example:3478", "turn:turn.court.example:3478?transport=udp"]'
    )
    monkeypatch.setenv("CC_MEDIA__TURN_SECRET", "coturn-shared-secret")
    monkeypatch.setenv("CC_MEDIA__TURN_CREDENTIAL_SECONDS", "600")
    world = await make_world()
    unit = UnitPeer(world)
    response = await world.client.post("/api/whip", data=await unit.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    links = response.headers.getall("Link")
    assert links[0] == '<stun:stun.court.example:3478>; rel="ice-server"'
    turn = re.fullmatch(r'<turn:turn\.court\.example:3478\?transport=udp>; rel="ice-server"; username="(\d+):([^"]+)"; '
                        r'credential="([^"]+)"; credential-type="password"', links[1])  # fmt: skip
    assert turn is not None
    expiry, who, credential = int(turn[1]), turn[2], turn[3]
    assert who == UNIT and 590 <= expiry - time.time() <= 610
    expected = hmac.new(b"coturn-shared-secret", f"{expiry}:{who}".encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected  # coturn's use-auth-secret check
    await unit.close()


# §4.3: trickle ICE and ICE restart --------------------------------------------------------------------


async def test_trickled_candidates_are_taken_with_204_and_the_session_connects(world: World) -> None:
    unit = UnitPeer(world)
    offer = await unit.offer()
    lines = offer.splitlines()
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    bare = "\r\n".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates")))
    response = await world.client.post("/api/whip", data=bare + "\r\n", headers={**world.auth("device"), **SDP_HEADERS})
    assert response.status == 201
    location, etag = response.headers["Location"], response.headers["ETag"]
    publisher = hub(world).publisher(UnitId(UNIT))
    assert publisher is not None and publisher.peer_connection is not None
    server = ice_connection(publisher.peer_connection)
    assert not server.remote_candidates
    mid = re.search(r"a=mid:(\S+)", offer)
    assert mid is not None and candidates
    fragment = f"m=audio 9 RTP/AVP 0\r\na=mid:{mid[1]}\r\n" + "\r\n".join(candidates) + "\r\na=end-of-candidates\r\n"
    patched = await world.client.patch(
        location, data=fragment, headers={**world.auth("device"), **SDPFRAG, "If-Match": etag}
    )
    assert patched.status == 204, await patched.text()
    assert patched.headers["ETag"] == etag  # trickle leaves the ICE session as it is
    assert {(c.host, c.port, c.type) for c in server.remote_candidates} >= {
        (line.split()[4], int(line.split()[5]), "host") for line in candidates}  # fmt: skip
    await unit.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
    await connected(unit.pc)
    await unit.close()


async def test_a_patch_needs_if_match_with_the_current_etag(world: World) -> None:
    unit = await publishing(world)
    headers = {**world.auth("device"), **SDPFRAG}
    missing = await world.client.patch(unit.location, data=CANDIDATE, headers=headers)
    assert missing.status == 428 and (await missing.json())["error"]["code"] == "precondition_required"
    stale = await world.client.patch(unit.location, data=CANDIDATE, headers={**headers, "If-Match": '"not-it"'})
    assert stale.status == 412 and (await stale.json())["error"]["code"] == "precondition_failed"
    weak = await world.client.patch(unit.location, data=CANDIDATE, headers={**headers, "If-Match": f"W/{unit.etag}"})
    assert weak.status == 412  # If-Match compares strongly
    wrong_type = await world.client.patch(unit.location, data=CANDIDATE,
                                          headers={**world.auth("device"), "Content-Type": "application/sdp",
                                                   "If-Match": unit.etag})  # fmt: skip
    assert wrong_type.status == 415
    garbage = await world.client.patch(unit.location, data="a=ice-ufrag:!!\r\n", headers={**headers, "If-Match": "*"})
    assert garbage.status == 422 and "a=ice-ufrag" in (await garbage.json())["error"]["message"]
    await unit.close()


async def test_an_ice_restart_answers_200_with_new_credentials_and_a_new_etag(world: World) -> None:
    unit = await publishing(world)
    old_ufrag = re.search(r"a=ice-ufrag:(\S+)", unit.answer)
    assert old_ufrag is not None
    fragment = "a=ice-ufrag:Rst1\r\na=ice-pwd:" + "n" * 24 + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    headers = {**world.auth("device"), **SDPFRAG}
    response = await world.client.patch(unit.location, data=fragment, headers={**headers, "If-Match": unit.etag})
    assert response.status == 200 and response.content_type == "application/trickle-ice-sdpfrag"
    body = await response.text()
    ufrag, pwd = re.search(r"a=ice-ufrag:(\S+)", body), re.search(r"a=ice-pwd:(\S+)", body)
    assert ufrag is not None and pwd is not None and ufrag[1] != old_ufrag[1]
    assert "a=candidate:" in body and "127.0.0.1" in body and body.rstrip().endswith("a=end-of-candidates")
    assert response.headers["ETag"] != unit.etag
    again = await world.client.patch(unit.location, data=CANDIDATE, headers={**headers, "If-Match": unit.etag})
    assert again.status == 412  # the old tag names the ICE session that was replaced
    await unit.close()


async def test_after_an_address_change_and_an_ice_restart_the_session_records_and_serves_its_viewers_on(
    world: World,
) -> None:
    """4G handover: the unit's address changes mid-stream; it restarts ICE instead of publishing again. The
    session, its recording and its viewers carry on: nobody reconnects."""
    unit = await publishing(world, rgb=(30, 160, 220))
    viewer = ViewerPeer(world)
    await viewer.watch()
    await viewer.frames("video", 3)
    publisher = hub(world).publisher(UnitId(UNIT))
    assert publisher is not None and publisher.recorder is not None
    recorder = publisher.recorder
    old_address = ice_connection(unit.pc)._nominated[1].local_addr

    unit.etag = await handover(world, unit, "127.0.0.2")

    assert ice_connection(unit.pc)._nominated[1].local_addr[0] == "127.0.0.2" != old_address[0]
    assert publisher.peer_connection is not None
    server = ice_connection(publisher.peer_connection)
    await eventually(lambda: server._nominated[1].remote_addr[0] == "127.0.0.2", what="the server follows the unit")
    heard = publisher.last_media
    await eventually(lambda: publisher.last_media > heard + 0.5, what="media arriving from the new address")
    frames = await viewer.frames("video", 10)  # the viewer keeps decoding, on the same connection
    assert len(frames) == 10 and viewer.pc.connectionState == "connected"
    assert hub(world).publisher(UnitId(UNIT)) is publisher and publisher.recorder is recorder
    assert unit.pc.connectionState == "connected" and hub(world).peer_connections == 2
    await viewer.close()
    await unit.close()


# §4.2 and RFC 9110: retries and rates ----------------------------------------------------------------


async def test_409_and_503_say_when_to_retry(make_world: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_MEDIA__MAX_SESSIONS", "1")
    world = await make_world()
    viewer = ViewerPeer(world)
    offer = await viewer.offer()
    headers = {**world.auth("operator"), **SDP_HEADERS}
    conflict = await world.client.post(f"/api/whep/{UNIT}", data=offer, headers=headers)
    assert conflict.status == 409 and int(conflict.headers["Retry-After"]) > 0
    unit = await publishing(world)
    full = await world.client.post(f"/api/whep/{UNIT}", data=offer, headers=headers)
    assert full.status == 503 and int(full.headers["Retry-After"]) > 0
    await viewer.close()
    await unit.close()


async def test_post_patch_and_delete_are_rate_limited_per_caller(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC_MEDIA__REQUESTS_PER_MINUTE", "3")
    world = await make_world()
    headers = {**world.auth("device"), **SDPFRAG, "If-Match": "*"}
    statuses = [(await world.client.patch("/api/whip/none", data=CANDIDATE, headers=headers)).status for _ in range(3)]
    assert statuses == [404, 404, 404]
    for method, path in (("PATCH", "/api/whip/none"), ("DELETE", "/api/whip/none"), ("POST", "/api/whip")):
        response = await world.client.request(method, path, data="v=0", headers=headers)
        assert response.status == 429, method
        assert (await response.json())["error"]["code"] == "too_many_requests"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    # another caller is not held back by this one
    other = await world.client.post(f"/api/whep/{UNIT}", data="v=0", headers={**world.auth("operator"), **SDP_HEADERS})
    assert other.status != 429


# Private extension: talkback on the WHIP session ------------------------------------------------------


async def test_talkback_is_a_sendrecv_audio_section_on_the_whip_session(world: World) -> None:
    """Not in RFC 9725 (docs/protocols.md): a unit offering audio ``sendrecv`` is answered ``sendrecv`` and
    plays what an operator says; a standard ``sendonly`` client is answered ``recvonly`` as the RFC expects."""
    talking = await publishing(world, audio=True, talkback=True)
    audio = talking.answer.split("m=audio", 1)[1].split("m=", 1)[0]
    assert "a=sendrecv" in audio
    await talking.close()
    await eventually(lambda: hub(world).publisher(UnitId(UNIT)) is None, within=15, what="the unit's session ended")
    plain = UnitPeer(world, audio=True)
    response = await world.client.post("/api/whip", data=await plain.offer(),
                                       headers={**world.auth("device"), **SDP_HEADERS})  # fmt: skip
    answer = await response.text()
    assert "a=recvonly" in answer.split("m=audio", 1)[1].split("m=", 1)[0]
    await plain.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await connected(plain.pc)
    await plain.close()


async def test_a_whep_view_takes_patches_from_its_viewer_only(world: World) -> None:
    """WHEP has the same PATCH as WHIP: the viewer restarts ICE on its own view; another user gets 404."""
    unit = await publishing(world)
    viewer = ViewerPeer(world)
    offer = await viewer.offer()
    headers = {**world.auth("operator"), **SDP_HEADERS}
    created = await world.client.post(f"/api/whep/{UNIT}", data=offer, headers=headers)
    assert created.status == 201 and created.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    location, etag = created.headers["Location"], created.headers["ETag"]
    fragment = "a=ice-ufrag:View\r\na=ice-pwd:" + "v" * 24 + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    stranger = {**world.auth("supervisor"), **SDPFRAG, "If-Match": etag}
    someone_else = await world.client.patch(location, data=fragment, headers=stranger)
    assert someone_else.status == 404
    restarted = await world.client.patch(location, data=fragment,
                                         headers={**world.auth("operator"), **SDPFRAG, "If-Match": etag})  # fmt: skip
    assert restarted.status == 200 and restarted.headers["ETag"] != etag
    assert "a=ice-ufrag:" in await restarted.text()
    await viewer.close()
    await unit.close()
