"""Media in consultation rooms (执行会商) with real aiortc peers on the real server: three centres publish their
camera and microphone, each receives and decodes the others' video (forwarded encoded: one peer connection per
participant) and watches the room's unit over WHEP; the host's mute stops a participant's audio to the others
and unmute restores it; who speaks is shown and each turn audited; leaving ends one's streams; the room's
recording verifies with the CLI; outsiders and bad offers are refused precisely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import AudioStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from command_center.credentials import lookup_hash, new_device_secret
from command_center.keys import MEDIA, ROOM_MEDIA
from config.settings import MediaSettings
from core.ids import CourtId, UnitId, UserId
from media.evidence import SEGMENT_ACTION
from media.rooms import participant_key
from persistence.models import Role, UnitKind
from tests.conftest import AppFactory, World
from tests.media_support import (  # noqa: F401 (loopback is a fixture)
    SDP_HEADERS,
    UNIT,
    ColourCamera,
    UnitPeer,
    ViewerPeer,
    connected,
    eventually,
    loopback,
    mean_rgb,
    new_pc,
)
from tests.test_media_recording import _cli
from tests.test_rooms import TARGET

pytestmark = pytest.mark.usefixtures("loopback")
NANGANG = "HLJ0103-U01"

COLOURS = {"supervisor": (200, 40, 40), "operator": (40, 200, 40), "daoli": (40, 40, 200)}


class Voice(AudioStreamTrack):
    """A microphone: a 440 Hz tone while ``talking``, digital silence otherwise (aiortc encodes it as Opus
    and sends each packet's RFC 6464 level)."""

    def __init__(self) -> None:
        super().__init__()
        self.talking = False
        self._t = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced 20 ms of silence, mono s16
        assert isinstance(frame, av.AudioFrame)
        if self.talking:
            t = (np.arange(frame.samples) + self._t) / frame.sample_rate
            tone = (np.sin(2 * np.pi * 440 * t) * 12_000).astype(np.int16).reshape(1, -1)
            loud = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            loud.sample_rate, loud.pts, loud.time_base = frame.sample_rate, frame.pts, frame.time_base
            frame = loud
        self._t += frame.samples
        return frame


class Participant:
    """A centre's console in the room: one publishing connection, one receiving connection per participant."""

    def __init__(self, world: World, who: str, room_id: str) -> None:
        self.world, self.who, self.room_id = world, who, room_id
        self.voice = Voice()
        self.pc = new_pc()
        self.pc.addTransceiver(ColourCamera(COLOURS[who]), direction="sendonly")
        self.pc.addTransceiver(self.voice, direction="sendonly")
        self.location = self.etag = ""
        self.views: dict[str, Any] = {}  # who → (pc, tracks, location)
        self.audio_frames: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def publish(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self.world.client.post(f"/api/rooms/{self.room_id}/media/publish",
                                                data=self.pc.localDescription.sdp,
                                                headers={**self.world.auth(self.who), **SDP_HEADERS})  # fmt: skip
        answer = await response.text()
        assert response.status == 201, answer
        assert response.content_type == "application/sdp" and response.headers["ETag"]
        self.location, self.etag = response.headers["Location"], response.headers["ETag"]
        assert self.location.startswith(f"/api/rooms/{self.room_id}/media/sessions/")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await connected(self.pc)

    async def view(self, other: str, user_id: int) -> None:
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        tracks: dict[str, MediaStreamTrack] = {}
        self.audio_frames[other] = 0

        def on_track(track: MediaStreamTrack) -> None:
            tracks[track.kind] = track
            if track.kind == "audio":
                self._tasks.append(asyncio.ensure_future(self._count(other, track)))

        pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        response = await self.world.client.post(
            f"/api/rooms/{self.room_id}/media/participants/{user_id}/view", data=pc.localDescription.sdp,
            headers={**self.world.auth(self.who), **SDP_HEADERS},
        )  # fmt: skip
        answer = await response.text()
        assert response.status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await connected(pc)
        self.views[other] = (pc, tracks, response.headers["Location"])

    async def _count(self, other: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.audio_frames[other] += 1

    async def video_of(self, other: str, count: int = 3) -> list[Any]:
        _pc, tracks, _location = self.views[other]
        async with asyncio.timeout(20):
            while "video" not in tracks:  # noqa: ASYNC110 (aiortc fires "track" as a callback)
                await asyncio.sleep(0.05)
            return [await tracks["video"].recv() for _ in range(count)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pc, _tracks, _location in self.views.values():
            await pc.close()
        await self.pc.close()


async def _id(world: World, username: str) -> int:
    user = await world.store.find_user(username)
    assert user is not None
    return user.id


async def _room(world: World) -> tuple[str, dict[str, int]]:
    """A room on a case of the Daoli court, hosted by the intermediate court's supervisor, with its operator and
    Daoli's operator invited and joined, and the Daoli unit pinned."""
    await world.add_user("daoli", Role.OPERATOR, "HLJ0102")
    await world.add_user("aihui", Role.OPERATOR, "HLJ1102")  # another city's court: never authorised
    for name in ("daoli", "aihui"):
        world.tokens[name] = await world.login(name)
    case = await world.store.add_case(case_number="(2026)黑0102执9号", court_id=CourtId("HLJ0102"), title="李某案",
                                      created_by=None, created_ms=0)  # fmt: skip
    ids = {who: await _id(world, who) for who in ("supervisor", "operator", "daoli", "aihui")}
    invited = [ids["operator"], ids["daoli"]]
    response = await world.client.post("/api/rooms", headers=world.auth("supervisor"), json={
        "title": "道里执行会商", "case_id": case.id, "unit_id": UNIT, "invited": invited})  # fmt: skip
    assert response.status == 201, await response.text()
    room_id: str = (await response.json())["room"]["id"]
    return room_id, ids


async def _join(world: World, room_id: str, who: str) -> None:
    response = await world.client.post(f"/api/rooms/{room_id}/join", headers=world.auth(who))
    assert response.status == 200, await response.text()


async def _members(world: World, room_id: str) -> dict[str, dict[str, Any]]:
    response = await world.client.get(f"/api/rooms/{room_id}", headers=world.auth("supervisor"))
    assert response.status == 200, await response.text()
    return {m["name"]: m for m in (await response.json())["room"]["members"]}


@pytest.fixture
async def media_world(make_world: AppFactory) -> World:
    return await make_world(media=MediaSettings(record_sessions=False, segment_seconds=1.0))


@pytest.fixture
async def room(media_world: World) -> AsyncIterator[tuple[str, dict[str, int], dict[str, Participant]]]:
    room_id, ids = await _room(media_world)
    people = {who: Participant(media_world, who, room_id) for who in ("supervisor", "operator", "daoli")}
    yield room_id, ids, people
    for person in people.values():
        await person.close()


async def test_outsiders_and_bad_offers_are_refused_precisely(
    media_world: World, room: tuple[str, dict[str, int], dict[str, Participant]]
) -> None:
    world = media_world
    room_id, ids, people = room
    offer = people["operator"]
    await offer.pc.setLocalDescription(await offer.pc.createOffer())
    sdp = offer.pc.localDescription.sdp
    publish = f"/api/rooms/{room_id}/media/publish"

    async def post(who: str, path: str, data: str, content_type: str = "application/sdp") -> tuple[int, str]:
        response = await world.client.post(path, data=data, headers={**world.auth(who), "Content-Type": content_type})
        return response.status, await response.text()

    status, text = await post("aihui", publish, sdp)
    assert status == 403 and "not invited" in text
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth("aihui"))
    await ws.send_json({"type": "subscribe", "topics": [f"room:{room_id}"]})
    refused = await ws.receive_json(timeout=10)
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    await ws.close()
    status, text = await post("operator", publish, sdp)  # invited, not joined yet
    assert status == 403 and "join room" in text
    await _join(world, room_id, "operator")
    status, text = await post("operator", publish, "v=0\nnonsense")
    assert status == 400, text
    receive_only = new_pc()
    receive_only.addTransceiver("audio", direction="recvonly")
    await receive_only.setLocalDescription(await receive_only.createOffer())
    status, text = await post("operator", publish, receive_only.localDescription.sdp)
    assert status == 422 and "does not send media" in text
    await receive_only.close()
    status, text = await post("operator", publish, sdp, content_type="text/plain")
    assert status == 415, text
    status, text = await post("operator", f"/api/rooms/{room_id}/media/participants/{ids['daoli']}/view", sdp)
    assert status == 404 and "not publishing" in text
    await offer.publish()  # a fresh offer: the first one is still unanswered and can be reused
    status, text = await post("aihui", f"/api/rooms/{room_id}/media/participants/{ids['operator']}/view", sdp)
    assert status == 403
    other = await world.client.delete(offer.location, headers=world.auth("supervisor"))  # not the owner
    assert other.status == 404
    trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
    candidate = "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    host = {**world.auth("supervisor"), **trickle}
    theirs = await world.client.patch(offer.location, data=candidate, headers={**host, "If-Match": offer.etag})
    assert theirs.status == 404
    owner = {**world.auth("operator"), **trickle}
    stale = await world.client.patch(offer.location, data=candidate, headers={**owner, "If-Match": '"not-it"'})
    assert stale.status == 412
    trickled = await world.client.patch(offer.location, data=candidate, headers={**owner, "If-Match": offer.etag})
    assert trickled.status == 204 and trickled.headers["ETag"] == offer.etag
    options = await world.client.options(offer.location)
    assert options.status == 204 and "PATCH" in options.headers["Allow"]
    closed = await world.client.post(f"/api/rooms/{room_id}/close", headers=world.auth("supervisor"))
    assert closed.status == 200
    hub = world.client.app[MEDIA]
    await eventually(lambda: hub.publisher(participant_key(room_id, UserId(ids["operator"]))) is None,
                     what="closing the room ends its streams")  # fmt: skip
    status, text = await post("supervisor", publish, sdp)
    assert status == 409 and "closed" in text


async def test_three_centres_and_a_unit_confer_mute_speak_leave_and_record(
    media_world: World, room: tuple[str, dict[str, int], dict[str, Participant]], tmp_path: Path
) -> None:
    world = media_world
    room_id, ids, people = room
    hub = world.client.app[MEDIA]
    for who in ("operator", "daoli"):
        await _join(world, room_id, who)
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth("daoli"))
    await ws.send_json({"type": "subscribe", "topics": [f"room:{room_id}"]})
    unit = UnitPeer(world, video="video/VP8", audio=True)
    await unit.publish()
    try:
        for person in people.values():
            await person.publish()
        for who, person in people.items():
            for other in people:
                if other != who:
                    await person.view(other, ids[other])
        # Each centre decodes the others' video, in their colours: forwarded as sent, never decoded here.
        for person in people.values():
            for other in person.views:
                frame = (await person.video_of(other))[-1]
                assert frame.width == 320
                red, green, blue = mean_rgb(frame)
                expected = COLOURS[other]
                assert abs(red - expected[0]) < 30 and abs(green - expected[1]) < 30 and abs(blue - expected[2]) < 30
        # The room's unit, pinned: every member watches it over the unit's own WHEP route.
        for who in people:
            watcher = ViewerPeer(world)
            await watcher.watch(UNIT, role=who)
            assert len(await watcher.frames("video", 2)) == 2
            await watcher.close()
        assert hub.session_counts()["participant"] == 3 and hub.session_counts()["unit"] == 1
        for person in people.values():
            key = participant_key(room_id, UserId(ids[person.who]))
            publisher = hub.publisher(key)
            assert publisher is not None and publisher.decoded_frames == 0

        # Screens see every member publishing audio and video.
        async with asyncio.timeout(20):
            while True:
                message = await ws.receive_json()
                if message["type"] in ("room", "snapshot") and all(
                    m["publishing"] == ["audio", "video"] for m in message["members"]
                ):
                    break
        assert {m["name"] for m in message["members"]} == {"supervisor", "operator", "daoli"}

        # Who speaks: Daoli's operator talks; shown, then audited once when the turn ends.
        people["daoli"].voice.talking = True
        await _until_member(world, room_id, "daoli", speaking=True)
        assert not (await _members(world, room_id))["operator"]["speaking"]
        people["daoli"].voice.talking = False
        await _until_member(world, room_id, "daoli", speaking=False)
        async with asyncio.timeout(10):  # audited on the SFU's next tick
            while not (turns := [e for e in await world.store.audit_entries() if e.action == "room.speaking"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert len(turns) == 1 and turns[0].details["user_id"] == ids["daoli"], turns
        assert int(turns[0].details["duration_ms"]) > 0

        # Mute: the host silences Daoli; the others stop receiving Daoli's audio while Daoli's source still sends.
        listener = people["operator"]
        await eventually(lambda: listener.audio_frames["daoli"] > 20, what="Daoli's audio arrives")
        muted = await world.client.post(f"/api/rooms/{room_id}/mute", headers=world.auth("supervisor"),
                                        json={"user_id": ids["daoli"], "muted": True})  # fmt: skip
        assert muted.status == 200
        daoli = hub.publisher(participant_key(room_id, UserId(ids["daoli"])))
        assert daoli is not None
        await _received_frames(hub, 400)  # let queued frames drain: every source keeps sending meanwhile
        at_mute = {who: p.audio_frames["daoli"] for who, p in people.items() if who != "daoli"}
        await _received_frames(hub, 600)
        for who, person in people.items():
            if who != "daoli":
                assert person.audio_frames["daoli"] == at_mute[who], "muted audio still reaches " + who
                assert person.audio_frames["supervisor" if who != "supervisor" else "operator"] > 0
        assert (await _members(world, room_id))["daoli"]["muted"] is True
        unmuted = await world.client.post(f"/api/rooms/{room_id}/mute", headers=world.auth("supervisor"),
                                          json={"user_id": ids["daoli"], "muted": False})  # fmt: skip
        assert unmuted.status == 200
        await eventually(lambda: listener.audio_frames["daoli"] > at_mute["operator"] + 25, what="unmuted audio")

        # Recording: each participant's stream its own hashed segments.
        started = await world.client.post(f"/api/rooms/{room_id}/recording", headers=world.auth("supervisor"),
                                          json={"on": True})  # fmt: skip
        assert started.status == 200, await started.text()
        assert len((await started.json())["participants"]) == 3
        async with asyncio.timeout(20):  # every member's page is told at once, on the room's topic
            while not ((message := await ws.receive_json())["type"] == "room" and message.get("recording") is True):
                pass
        refused = await world.client.post(f"/api/rooms/{room_id}/recording", headers=world.auth("operator"),
                                          json={"on": False})  # fmt: skip
        assert refused.status == 403
        await _received_frames(hub, 500)
        stopped = await world.client.post(f"/api/rooms/{room_id}/recording", headers=world.auth("supervisor"),
                                          json={"on": False})  # fmt: skip
        assert stopped.status == 200 and (await stopped.json())["recording"] is False
        async with asyncio.timeout(20):
            while not ((message := await ws.receive_json())["type"] == "room" and message.get("recording") is False):
                pass
        segments = [e.details for e in await world.store.audit_entries() if e.action == SEGMENT_ACTION]
        recorded = {str(s["unit_id"]) for s in segments}
        assert recorded == {participant_key(room_id, UserId(ids[who])) for who in people}, recorded

        # Leaving ends the leaver's stream and views.
        left = await world.client.post(f"/api/rooms/{room_id}/leave", headers=world.auth("operator"))
        assert left.status == 200
        key = participant_key(room_id, UserId(ids["operator"]))
        assert hub.publisher(key) is None
        gone = await world.client.delete(people["operator"].location, headers=world.auth("operator"))
        assert gone.status == 404
        assert not [s for s in hub.viewers() if s.user_id == ids["operator"]]
        assert (await _members(world, room_id))["operator"]["publishing"] == []
        mine = await world.client.delete(people["daoli"].location, headers=world.auth("daoli"))
        assert mine.status == 200
        assert hub.publisher(participant_key(room_id, UserId(ids["daoli"]))) is None
    finally:
        await ws.close()
        await unit.close()
    await world.client.close()  # the CLI reads the same database and files
    verified = _cli(tmp_path, "recording", "verify")
    assert verified.returncode == 0 and f"{len(segments)} segments match" in verified.stdout, verified.stderr


async def _until_member(world: World, room_id: str, name: str, **wanted: Any) -> None:
    async with asyncio.timeout(15):
        while True:
            member = (await _members(world, room_id))[name]
            if all(member[k] == v for k, v in wanted.items()):
                return
            await asyncio.sleep(0.05)


async def _received_frames(hub: Any, more: int) -> None:
    """Wait until the server has received ``more`` encoded frames from the sources (a count, not a time)."""
    target = hub.counts.frames_received + more
    await eventually(lambda: hub.counts.frames_received >= target, within=30, what=f"{more} more frames")


async def test_a_revoked_session_ends_its_room_streams(
    media_world: World, room: tuple[str, dict[str, int], dict[str, Participant]]
) -> None:
    world = media_world
    room_id, ids, people = room
    await _join(world, room_id, "daoli")
    await people["daoli"].publish()
    await people["supervisor"].publish()
    await people["daoli"].view("supervisor", ids["supervisor"])
    rooms = world.client.app[ROOM_MEDIA]
    assert rooms.media_state(room_id, UserId(ids["daoli"]))["publishing"] == ["audio", "video"]
    out = await world.client.post("/api/auth/logout", headers=world.auth("daoli"))
    assert out.status in (200, 204), await out.text()
    hub = world.client.app[MEDIA]
    await eventually(lambda: hub.publisher(participant_key(room_id, UserId(ids["daoli"]))) is None,
                     what="logging out ends the stream")  # fmt: skip
    await eventually(lambda: not [v for v in hub.viewers() if v.user_id == ids["daoli"]], what="and the views")
    assert hub.publisher(participant_key(room_id, UserId(ids["supervisor"]))) is not None


async def test_a_member_from_another_court_watches_the_pinned_unit_only_while_in_the_room(
    media_world: World, room: tuple[str, dict[str, int], dict[str, Participant]]
) -> None:
    """The pinned unit is Nangang's (HLJ0103), outside Daoli's court, in a room of an operation both courts'
    units take part in: Daoli's operator watches it while present in the room, and that view ends when they
    leave."""
    world = media_world
    _room_id, ids, _people = room
    secret = new_device_secret()
    await world.store.add_unit(unit_id=UnitId(NANGANG), name="南岗一号", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ0103"), secret_hash=lookup_hash(secret))  # fmt: skip
    plan = {"kind": "search", "title": "联合搜查", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": [UNIT, NANGANG]}  # fmt: skip
    planned = await world.client.post("/api/operations", json=plan, headers=world.auth("operator"))
    assert planned.status == 201, await planned.text()
    operation_id = (await planned.json())["operation"]["id"]
    response = await world.client.post("/api/rooms", headers=world.auth("supervisor"), json={
        "title": "跨区会商", "operation_id": operation_id, "unit_id": NANGANG, "invited": [ids["daoli"]]})  # fmt: skip
    assert response.status == 201, await response.text()
    room_id = (await response.json())["room"]["id"]
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish(headers={"Authorization": f"Bearer {secret}"})
    viewer = ViewerPeer(world)
    try:
        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        outside = await world.client.post(f"/api/whep/{NANGANG}", data=viewer.pc.localDescription.sdp,
                                          headers={**world.auth("daoli"), **SDP_HEADERS})  # fmt: skip
        assert outside.status == 403
        await _join(world, room_id, "daoli")
        await viewer.watch(NANGANG, role="daoli")
        assert len(await viewer.frames("video", 2)) == 2
        hub = world.client.app[MEDIA]
        assert [v for v in hub.viewers_of(UnitId(NANGANG)) if v.owner and v.owner.user_id == ids["daoli"]]
        left = await world.client.post(f"/api/rooms/{room_id}/leave", headers=world.auth("daoli"))
        assert left.status == 200
        assert not [v for v in hub.viewers_of(UnitId(NANGANG)) if v.owner and v.owner.user_id == ids["daoli"]]
    finally:
        await viewer.close()
        await unit.close()


async def test_recording_a_room_is_rate_limited_like_its_other_media_requests(make_world: AppFactory) -> None:
    """``POST /api/rooms/{id}/recording`` counts against the caller's ``media.requests_per_minute``: past it, 429."""
    world = await make_world(media=MediaSettings(record_sessions=False, requests_per_minute=3))
    room_id, _ids = await _room(world)
    path = f"/api/rooms/{room_id}/recording"
    for on in (True, False, True):
        answer = await world.client.post(path, json={"on": on}, headers=world.auth("supervisor"))
        assert answer.status == 200, await answer.text()
    refused = await world.client.post(path, json={"on": False}, headers=world.auth("supervisor"))
    assert refused.status == 429 and "Retry-After" in refused.headers


async def test_a_rooms_media_state_is_freed_when_its_last_session_ends(
    media_world: World, room: tuple[str, dict[str, int], dict[str, Participant]]
) -> None:
    """Not only when the room is closed: once its last source here has ended, the process holds nothing of
    the room (and members see that nobody publishes)."""
    world = media_world
    room_id, ids, people = room
    rooms = world.client.app[ROOM_MEDIA]
    await _join(world, room_id, "operator")
    await people["operator"].publish()
    assert room_id in rooms.held()
    ended = await world.client.delete(people["operator"].location, headers=world.auth("operator"))
    assert ended.status == 200
    await eventually(lambda: room_id not in rooms.held(), what="the room's state freed")
    assert rooms.media_state(room_id, UserId(ids["operator"]))["publishing"] == []
