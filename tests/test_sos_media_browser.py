"""An SOS from a unit that streams: the alarm goes to every screen, the unit's recording starts at once (even
when sessions are not recorded by default), and the wall display opens the unit's live video by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from command_center.keys import MEDIA
from config.settings import MediaSettings
from core.ids import UnitId
from tests.conftest import AppFactory
from tests.media_support import UNIT, UnitPeer, eventually, loopback  # noqa: F401 (fixture)
from tests.test_field_page_browser import MEDIA_FLAGS
from tests.test_live_tracking import fix
from tests.test_wall_display_browser import CHROMIUM

pytestmark = pytest.mark.usefixtures("loopback")
SCREENSHOT = Path("/tmp/wall-sos-video.png")


async def test_an_sos_records_and_opens_the_stream_on_the_wall(make_world: AppFactory) -> None:
    world = await make_world(media=MediaSettings(record_sessions=False, segment_seconds=30))
    unit = UnitPeer(world, video="video/VP8", rgb=(220, 30, 30))
    await unit.publish()
    hub = world.client.app[MEDIA]
    assert not hub.recording(UnitId(UNIT))
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            await page.goto(f"{base}/")
            await page.fill("input[name=username]", "operator")
            await page.fill("input[name=password]", world.passwords["operator"])
            await page.click("button[type=submit]")
            await page.click("#wall-link")
            await page.wait_for_function("() => window.wallState && window.wallState.connected")

            ack = await unit.send(fix(1, sos=True))  # over the unit's data channel
            assert ack["type"] == "ack" and ack["stored"] == [1]
            await eventually(lambda: hub.recording(UnitId(UNIT)), what="recording started by the SOS")
            await page.wait_for_selector("#sos-video:not([hidden])")
            await page.wait_for_function(
                "() => document.querySelector('#sos-video-player').videoWidth === 320", timeout=20_000
            )
            assert "道里一号" in (await page.text_content("#sos-video-title") or "")
            await page.screenshot(path=str(SCREENSHOT))
            await page.click("#sos-video-close")
            await page.wait_for_selector("#sos-video[hidden]", state="attached")
            assert problems == []
        finally:
            await context.close()
            await browser.close()
            await unit.close()
