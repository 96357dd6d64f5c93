"""GB/T 28181 cameras on the screens, in headless Chromium (a peer nobody here wrote): the operator console
opens a camera's video the way it opens any unit's (the WHEP request INVITEs the camera, which sends main
profile H.264 as PS over RTP, forwarded untouched), and a camera's one-key alarm brings its video onto the
wall by itself."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from command_center.keys import GB_LIVE, MEDIA
from core.ids import UnitId
from simulators.gb28181.clip import aac_clip, g711_clip
from tests.conftest import AppFactory
from tests.gb28181.test_media_audio import camera as audio_camera
from tests.gb28181.test_media_device import UNIT, camera, gb_media, registered, stop
from tests.gb28181.test_sipp_device import DEVICE, add_gb_unit, china_time, gb_enabled
from tests.media_support import eventually, loopback
from tests.test_field_page_browser import MEDIA_FLAGS
from tests.test_wall_display_browser import CHROMIUM

pytestmark = [pytest.mark.usefixtures("loopback"), pytest.mark.usefixtures("gb_enabled")]
__all__ = ["gb_enabled", "gb_media", "loopback"]  # fixtures
SCREENSHOT = Path("/tmp/gb-console-video.png")


async def test_the_console_plays_a_gb_cameras_video(gb_media: None, make_world: AppFactory, tmp_path: Path) -> None:
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    sender = asyncio.create_task(camera(world))
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            await page.goto(f"{base}/")
            await page.fill("input[name=username]", "operator")
            await page.fill("input[name=password]", world.passwords["operator"])
            await page.click("button[type=submit]")
            await page.click("#console-link")
            await page.wait_for_function("() => window.consoleState?.refreshes >= 1")
            await page.select_option("#video-unit", UNIT)
            await page.click("#watch")
            await page.wait_for_function("() => document.querySelector('#video').videoWidth === 320", timeout=20_000)
            first = await page.evaluate("document.querySelector('#video').currentTime")
            await page.wait_for_function(f"() => document.querySelector('#video').currentTime > {first} + 0.5")
            await page.screenshot(path=str(SCREENSHOT))
            await page.click("#watch")  # stop watching
            hub = world.client.app[MEDIA]
            await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, within=8, what="BYE once unwatched")
            assert problems == []
        finally:
            await context.close()
            await browser.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await stop(call)


async def test_a_cameras_alarm_opens_its_video_on_the_wall(
    gb_media: None, make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world()
    password = await add_gb_unit(world, UNIT, DEVICE)
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        call = None
        sender = asyncio.create_task(camera(world))
        try:
            await page.goto(f"{base}/")
            await page.fill("input[name=username]", "operator")
            await page.fill("input[name=password]", world.passwords["operator"])
            await page.click("button[type=submit]")
            await page.click("#wall-link")
            await page.wait_for_function("() => window.wallState && window.wallState.connected")
            call = await registered(world, tmp_path, "media_alarm.xml", password=password, alarm_time=china_time(-1))
            await page.wait_for_selector("#sos-video:not([hidden])", timeout=20_000)
            await page.wait_for_function(
                "() => document.querySelector('#sos-video-player').videoWidth === 320", timeout=20_000
            )
            await page.screenshot(path="/tmp/gb-wall-sos-video.png")
            assert world.client.app[MEDIA].recording(UnitId(UNIT))
            assert problems == []
        finally:
            await context.close()
            await browser.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if call is not None:
                await stop(call)


@pytest.mark.parametrize("audio_type", [0x90, 0x0F])
async def test_the_console_plays_a_cameras_g711_and_says_why_aac_is_not_heard(
    gb_media: None, make_world: AppFactory, tmp_path: Path, audio_type: int
) -> None:
    """G.711A reaches Chromium as an audio track with packets flowing; AAC is not sent, and the console says
    why beside 播放中 (the 201's Media-Not-Forwarded), the video playing either way."""
    world = await make_world()
    call = await registered(world, tmp_path, "media_register.xml")
    audio = g711_clip(50) if audio_type == 0x90 else aac_clip(50)
    sender = asyncio.create_task(audio_camera(world, audio, audio_type))
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            await page.goto(f"{base}/")
            await page.fill("input[name=username]", "operator")
            await page.fill("input[name=password]", world.passwords["operator"])
            await page.click("button[type=submit]")
            await page.click("#console-link")
            await page.wait_for_function("() => window.consoleState?.refreshes >= 1")
            await page.select_option("#video-unit", UNIT)
            await page.click("#watch")
            await page.wait_for_function("() => document.querySelector('#video').videoWidth === 320", timeout=20_000)
            state = await page.text_content("#video-state")
            tracks = await page.evaluate("document.querySelector('#video').srcObject.getAudioTracks().length")
            if audio_type == 0x90:
                assert state == "播放中" and tracks == 1
                await page.wait_for_function(  # a remote track is unmuted by its first RTP packets (WebRTC §4.3.2)
                    "() => document.querySelector('#video').srcObject.getAudioTracks()[0].muted === false"
                )
                stream = world.client.app[GB_LIVE].stream(UnitId(UNIT))
                assert stream is not None and stream.audio_frames > 25 and stream.audio_errors == 0
            else:
                assert state is not None and state.startswith("播放中 · ") and "AAC" in state and "仅录像存证" in state
                assert tracks == 0
            assert problems == []
        finally:
            await context.close()
            await browser.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await stop(call)
