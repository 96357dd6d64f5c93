"""Consultation with media in headless Chromium (issue 18): three centres and a unit confer. Daoli's operator
(basic court, the host) and the high court's supervisor each in their own Chromium console with a fake camera
and microphone, the intermediate court's operator as an aiortc participant, and the room's unit streaming
over WHIP. Each console plays the others' video (frames decoded and time advancing) and the unit's, pinned;
the aiortc participant decodes both consoles' video; the host's mute shows in the other console from the
screen socket; recording starts and stops; leaving turns the camera off and takes the tile away.

A console whose camera is refused (Chromium without the fake prompt, the camera not granted) says so, still
publishes its voice, and a participant with no video says "audio only" instead of a black box.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import AudioStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from playwright.async_api import Browser, Page, async_playwright

from command_center.keys import MEDIA
from core.ids import CourtId, UserId
from media.peers import Publisher
from media.rooms import participant_key
from persistence.models import Role
from tests.conftest import World
from tests.media_support import SDP_HEADERS, UNIT, ColourCamera, UnitPeer, connected, eventually, loopback, new_pc  # noqa: F401
from tests.test_field_page_browser import MEDIA_FLAGS
from tests.test_wall_display_browser import CHROMIUM

pytestmark = pytest.mark.usefixtures("loopback")
#: Chromium that asks before using a device (no --use-fake-ui-for-media-stream): the context's grants decide.
PROMPTING_FLAGS = [f for f in MEDIA_FLAGS if f != "--use-fake-ui-for-media-stream"]


def _voice(folder: Path) -> Path:
    """A steady 440 Hz tone for Chromium's fake microphone (its own fake sound is a short beep a second,
    rarely a speaking turn): the consoles speak all the time."""
    path = folder / "voice.wav"
    samples = (np.sin(2 * np.pi * 440 * np.arange(48_000 * 2) / 48_000) * 12_000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(samples.tobytes())
    return path


class Participant:
    """A centre in the room without a browser (aiortc): publishes a coloured camera and a microphone, and
    views other participants, decoding their video."""

    def __init__(self, world: World, who: str, room_id: str, *, video: bool = True) -> None:
        self.world, self.who, self.room, self.video = world, who, room_id, video
        self.pc = new_pc()
        self.location = ""
        self.views: dict[int, Any] = {}
        self.frames: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def post_sdp(self, path: str, sdp: str) -> tuple[str, str]:
        """The answer and the session's Location."""
        response = await self.world.client.post(path, data=sdp, headers={**self.world.auth(self.who), **SDP_HEADERS})
        answer = await response.text()
        assert response.status == 201, answer
        assert response.headers["Location"].startswith(f"/api/rooms/{self.room}/media/sessions/")
        return answer, response.headers["Location"]

    async def join_and_publish(self) -> None:
        response = await self.world.client.post(f"/api/rooms/{self.room}/join", headers=self.world.auth(self.who))
        assert response.status == 200, await response.text()
        await self.publish()

    async def publish(self) -> None:
        await self.pc.close()
        self.pc = new_pc()
        if self.video:
            self.pc.addTransceiver(ColourCamera((30, 160, 60)), direction="sendonly")
        self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer, self.location = await self.post_sdp(f"/api/rooms/{self.room}/media/publish",
                                                    self.pc.localDescription.sdp)  # fmt: skip
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await connected(self.pc)

    async def unpublish(self) -> None:
        response = await self.world.client.delete(self.location, headers=self.world.auth(self.who))
        assert response.status == 200, await response.text()
        await self.pc.close()

    async def view(self, user_id: int) -> None:
        pc = new_pc()
        self.views[user_id] = pc
        self.frames[user_id] = 0
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

        async def count(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.frames[user_id] += 1

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.add(asyncio.create_task(count(track), name=f"count:{user_id}"))

        pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        path = f"/api/rooms/{self.room}/media/participants/{user_id}/view"
        answer, _ = await self.post_sdp(path, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await connected(pc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for pc in [*self.views.values(), self.pc]:
            await pc.close()


async def _open_room(world: World, *, invite: list[str], unit: bool = True) -> tuple[str, dict[str, int]]:
    """Daoli's operator opens a room on the court's case, inviting ``invite``; answers the room and user ids."""
    case = await world.store.add_case(case_number="(2026)黑0102执99号", court_id=CourtId("HLJ0102"),
                                      title="李某拒不履行案", created_by=None, created_ms=0)  # fmt: skip
    world.tokens["daoli"] = await world.login("daoli")
    found = await world.client.get(f"/api/rooms/candidates?case_id={case.id}", headers=world.auth("daoli"))
    ids = {c["display_name"]: c["user_id"] for c in (await found.json())["candidates"]}
    me = await (await world.client.get("/api/me", headers=world.auth("daoli"))).json()
    ids["daoli"] = me["user"]["id"]
    room = {"title": "李某案执行会商", "case_id": case.id, "invited": [ids[n] for n in invite],
            **({"unit_id": UNIT} if unit else {})}  # fmt: skip
    response = await world.client.post("/api/rooms", json=room, headers=world.auth("daoli"))
    assert response.status == 201, await response.text()
    return (await response.json())["room"]["id"], ids


@contextlib.asynccontextmanager
async def _chromium(flags: list[str]) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            yield browser
        finally:
            await browser.close()


async def _console(world: World, browser: Browser, username: str, room_id: str, problems: list[str],
                   permissions: list[str] | None = None) -> Page:  # fmt: skip
    """A centre's console in its own browser context, logged in, showing the room."""
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 1100}, locale="zh-CN",
                                        permissions=permissions)  # fmt: skip
    context.set_default_timeout(20_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{username}: {error}"))
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", world.passwords[username])
    await page.click("button[type=submit]")
    await page.click("#rooms-link")
    await page.wait_for_url(f"{base}/rooms")
    await page.click(f"#rooms tr[data-room='{room_id}'] button.show")
    await page.wait_for_function("(id) => window.roomsState.room?.id === id", arg=room_id)
    return page


async def _plays(page: Page, user_ids: list[int]) -> None:
    """Every tile of ``user_ids`` and the pinned unit show decoded video, and its time moves on."""
    tiles = "(s, ids) => ids.every((id) => s.tiles[id]?.width > 0) && s.unit.width > 0"
    await page.wait_for_function(f"(ids) => {{ const s = window.roomsState.media; return s && ({tiles})(s, ids); }}",
                                 arg=[str(i) for i in user_ids])  # fmt: skip
    before = await page.evaluate("() => window.roomsState.media")
    await page.wait_for_function(
        "([ids, before]) => { const s = window.roomsState.media;"
        " return ids.every((id) => s.tiles[id].time > before.tiles[id].time) && s.unit.time > before.unit.time; }",
        arg=[[str(i) for i in user_ids], before],
    )


async def test_three_centres_and_a_unit_confer_in_chromium_and_aiortc(world: World, tmp_path: Path) -> None:
    await world.add_user("daoli", Role.OPERATOR, "HLJ0102")
    await world.add_user("high", Role.SUPERVISOR, "HLJ")
    room_id, ids = await _open_room(world, invite=["high", "operator"])
    unit = UnitPeer(world, video="video/VP8", audio=True, channel=False)
    await unit.publish()
    aiortc = Participant(world, "operator", room_id)  # the intermediate court's centre
    problems: list[str] = []
    try:
        await aiortc.join_and_publish()
        async with _chromium([*MEDIA_FLAGS, f"--use-file-for-fake-audio-capture={_voice(tmp_path)}"]) as browser:
            host = await _console(world, browser, "daoli", room_id, problems)  # present since it opened the room
            guest = await _console(world, browser, "high", room_id, problems)
            await guest.click("#join")
            assert await host.text_content("h1") == "执行指挥中心 · 执行会商"

            await _plays(host, [ids["high"], ids["operator"]])
            await _plays(guest, [ids["daoli"], ids["operator"]])
            for page, others in ((host, ("high", "operator")), (guest, ("daoli", "operator"))):  # their voices
                await page.wait_for_function(
                    "async (ids) => { const heard = await window.roomsState.conference.heard();"
                    " return ids.every((id) => heard[id] > 0); }",
                    arg=[str(ids[o]) for o in others],
                )
            for page in (host, guest):  # its own camera, published
                media = await page.evaluate("() => window.roomsState.media")
                assert media["publishing"] and media["self"]["width"] > 0 and media["cameraNote"] == "", media
            for user_id in (ids["daoli"], ids["high"]):  # what the consoles publish reaches the aiortc centre
                await aiortc.view(user_id)
            await eventually(lambda: min(aiortc.frames.values()) >= 10, within=20, what="aiortc decodes both consoles")

            for page, other in ((host, "high"), (guest, "daoli")):  # each console hears the other speak
                await page.wait_for_selector(f"#tiles .tile[data-user='{ids[other]}'] .badge.speaking", state="visible")
            assert await host.locator(f"#tiles .tile[data-user='{ids['operator']}'] .badge.speaking").is_hidden()
            mute = host.locator(f"#tiles .tile[data-user='{ids['operator']}'] button.mute")
            assert await mute.text_content() == "静音"  # only the host has the buttons
            assert await guest.locator("#tiles button.mute").count() == 0
            await mute.click()
            badge = f"#tiles .tile[data-user='{ids['operator']}'] .badge.muted-flag"
            await guest.wait_for_selector(badge, state="visible")  # from the screen socket, not the guest's poll
            assert await guest.text_content(badge) == "已静音"
            assert await guest.evaluate("() => window.roomsState.live")  # its room's members come from the socket
            await host.wait_for_function(
                f"() => document.querySelector(\"#tiles .tile[data-user='{ids['operator']}'] button.mute\")"
                ".textContent === '取消静音'"
            )

            await host.click("#record")
            await host.wait_for_selector("#recording-flag", state="visible")
            assert await host.text_content("#record") == "停止录制"
            await guest.wait_for_selector("#recording-flag", state="visible")  # everyone is told they are recorded
            assert await guest.locator("#record").is_hidden()  # only the host records
            await host.screenshot(path=str(tmp_path / "host.png"), full_page=True)
            await guest.screenshot(path=str(tmp_path / "guest.png"), full_page=True)
            await host.click("#record")
            await host.wait_for_selector("#recording-flag", state="hidden")
            assert await host.text_content("#record") == "开始录制"

            await guest.evaluate(
                "() => { window.camera = document.querySelector('#tiles .tile.self video').srcObject; }"
            )
            await guest.click("#leave")
            await guest.wait_for_function("() => window.roomsState.media === null")
            assert await guest.evaluate("() => window.camera.getTracks().every((t) => t.readyState === 'ended')")
            assert await guest.locator("#tiles .tile").count() == 0
            await host.wait_for_selector(f"#tiles .tile[data-user='{ids['high']}']", state="detached")
            assert await host.locator(f"#tiles .tile[data-user='{ids['operator']}']").count() == 1

            hub = world.client.app[MEDIA]  # the host's stream ends on the server's side (as after a timeout) …
            before = await host.evaluate("() => window.roomsState.conference.publisher.location")
            key = participant_key(room_id, UserId(ids["daoli"]))
            ended = await hub.end_where(lambda s: s.unit_id == key and isinstance(s, Publisher), "test: it ends")
            assert ended == 1
            await host.wait_for_function(  # … and the page, told by the socket, publishes again by itself
                "(before) => { const p = window.roomsState.conference.publisher;"
                " return p?.location && p.location !== before && p.pc.connectionState === 'connected'; }",
                arg=before,
            )

            await aiortc.unpublish()  # a participant who stops publishing loses the tile, and has it back
            await host.wait_for_selector(f"#tiles .tile[data-user='{ids['operator']}']", state="detached")
            await aiortc.publish()
            await _plays(host, [ids["operator"]])
            print("screenshots:", tmp_path)
    finally:
        await aiortc.close()
        await unit.close()
    assert problems == []


async def test_a_refused_camera_and_a_participant_without_video_are_told(world: World, tmp_path: Path) -> None:
    await world.add_user("daoli", Role.OPERATOR, "HLJ0102")
    room_id, ids = await _open_room(world, invite=["operator"], unit=False)
    voice_only = Participant(world, "operator", room_id, video=False)
    problems: list[str] = []
    try:
        await voice_only.join_and_publish()
        async with _chromium(PROMPTING_FLAGS) as browser:
            host = await _console(world, browser, "daoli", room_id, problems, permissions=["microphone"])
            await host.wait_for_function("() => window.roomsState.media?.publishing")  # its voice goes out
            media = await host.evaluate("() => window.roomsState.media")
            assert media["cameraNote"] == "cameraDenied" and media["self"]["note"].startswith("浏览器未允许使用摄像头")
            assert (await host.text_content("#message") or "").startswith("浏览器未允许使用摄像头")
            note = f"#tiles .tile[data-user='{ids['operator']}'] .tile-note"
            await host.wait_for_selector(note, state="visible")
            assert await host.text_content(note) == "对方未开启摄像头，仅有声音"
            await host.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
            await host.click("#lang")
            await host.wait_for_function(
                f"() => document.querySelector(\"{note}\").textContent === 'No camera: audio only'"
            )

            # A closed tab frees its sessions at once: on pagehide every DELETE goes with fetch's keepalive.
            hub = world.client.app[MEDIA]
            mine = participant_key(room_id, UserId(ids["daoli"]))
            assert hub.publisher(mine) is not None and [v for v in hub.viewers() if v.user_id == ids["daoli"]]
            await host.evaluate(
                "() => { window.sent = []; const real = window.fetch;"
                " window.fetch = (url, init = {}) => { window.sent.push([String(url), init.method, init.keepalive]);"
                " return real(url, init); };"
                " window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false })); }"
            )
            sent = await host.evaluate("() => window.sent")
            deletes = [s for s in sent if s[1] == "DELETE"]
            assert len(deletes) == 2 and all(s[2] is True for s in deletes), sent  # my stream and my one view
            assert all(url.startswith(f"/api/rooms/{room_id}/media/sessions/") for url, *_ in deletes), sent
            await eventually(lambda: hub.publisher(mine) is None, what="the closed page's stream ends")
            await eventually(lambda: not [v for v in hub.viewers() if v.user_id == ids["daoli"]], what="its view too")
    finally:
        await voice_only.close()
    assert problems == []
