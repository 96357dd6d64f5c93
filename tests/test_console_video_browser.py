"""The operator console in headless Chromium (a peer nobody here wrote) watches a unit's live video over WHEP
and talks to it with push-to-talk; the unit (aiortc) hears the console's microphone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.conftest import World
from tests.media_support import UNIT, UnitPeer, eventually, loopback  # noqa: F401 (fixture)
from tests.test_field_page_browser import MEDIA_FLAGS
from tests.test_wall_display_browser import CHROMIUM

pytestmark = pytest.mark.usefixtures("loopback")
SCREENSHOT = Path("/tmp/console-video.png")


async def test_the_console_plays_a_units_video_and_talks_to_it(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8", audio=True, talkback=True, rgb=(30, 160, 60))
    await unit.publish()
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
            # the unit's own frames play: size known and time moving
            await page.wait_for_function("() => document.querySelector('#video').videoWidth === 320", timeout=20_000)
            first = await page.evaluate("document.querySelector('#video').currentTime")
            await page.wait_for_function(f"() => document.querySelector('#video').currentTime > {first} + 0.5")

            await page.hover("#talk")
            await page.mouse.down()  # push ...
            await page.wait_for_selector("#talk.on")
            await eventually(lambda: len(unit.heard) >= 25, within=15, what="the unit hears the console")
            await page.screenshot(path=str(SCREENSHOT))
            await page.mouse.up()  # ... and release
            await page.wait_for_selector("#talk:not(.on)")
            talks = [e.action for e in await world.store.audit_entries() if e.action.startswith("media.talk")]
            assert talks[0] == "media.talk.start"
            await page.click("#watch")  # stop watching
            assert problems == []
        finally:
            await context.close()
            await browser.close()
            await unit.close()
    # the view ends when the server handles the page's DELETE (or sees the peer go): on a busy machine that is
    # a moment after the browser has closed, so the audit log is read until it holds the end
    for _ in range(100):
        actions = [e.action for e in await world.store.audit_entries() if e.action.startswith("media.")]
        if "media.view.end" in actions:
            break
        await asyncio.sleep(0.1)
    assert actions.count("media.talk.end") == 1 and actions.count("media.view.end") == 1, actions
