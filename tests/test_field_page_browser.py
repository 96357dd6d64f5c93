"""Headless Chromium as a field unit (a peer nobody here wrote): the browser field client page streams its fake
camera and microphone to our WHIP endpoint and its location over the telemetry data channel; an aiortc WHEP
viewer receives the video; the positions and an SOS reach the tracker; the unit ends its session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from command_center.keys import MEDIA, TRACKER
from core.ids import UnitId
from media.ice_control import remote_ufrag
from persistence.models import Status
from tests.conftest import World
from tests.media_support import UNIT, ViewerPeer, eventually, loopback  # noqa: F401 (fixture)
from tests.test_wall_display_browser import CHROMIUM

pytestmark = pytest.mark.usefixtures("loopback")
MEDIA_FLAGS = ["--headless=new", "--no-sandbox", "--use-fake-device-for-media-stream",
               "--use-fake-ui-for-media-stream", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOT = Path("/tmp/field.png")


async def test_chromium_streams_to_whip_and_a_viewer_receives_it(world: World) -> None:
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(
            viewport={"width": 480, "height": 860}, locale="zh-CN", permissions=["geolocation"],
            geolocation={"latitude": 45.7612, "longitude": 126.6201, "accuracy": 8},
        )  # fmt: skip
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        viewer = ViewerPeer(world)
        try:
            await page.goto(f"{base}/field")
            await page.fill("input[name=secret]", world.device_secret)
            await page.click("#device button[type=submit]")
            await page.wait_for_function("() => window.fieldState?.link === 'live'", timeout=20_000)
            hub = world.client.app[MEDIA]
            await eventually(lambda: hub.publisher(UnitId(UNIT)) is not None, what="the unit's WHIP session")

            await viewer.watch()
            frames = await viewer.frames("video", 10)
            assert frames[-1].width == 640 and frames[-1].height == 480  # Chromium's fake camera, as sent

            tracker = world.client.app[TRACKER]
            await page.wait_for_function("() => window.fieldState?.acked >= 1")  # over the data channel
            latest = tracker.latest(UnitId(UNIT))
            assert latest is not None and (round(latest.lat, 4), round(latest.lon, 4)) == (45.7612, 126.6201)
            await page.click("#sos")
            await eventually(lambda: tracker.state(UnitId(UNIT)).status is Status.SOS, what="SOS on the tracker")
            await page.screenshot(path=str(SCREENSHOT))

            await page.click("#stop")  # DELETE on the session's Location
            await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="the session ended")
            assert problems == []
        finally:
            await viewer.close()
            await context.close()
            await browser.close()
            await asyncio.sleep(0)


async def test_chromium_restarts_ice_on_a_network_change_and_keeps_its_session(world: World) -> None:
    """The phone's network changes (the page hears "online"): it restarts ICE over PATCH on the same WHIP
    session; the server's session, its recording and a viewer carry on."""
    base = str(world.client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=MEDIA_FLAGS)
        context = await browser.new_context(permissions=["geolocation"],
                                            geolocation={"latitude": 45.7612, "longitude": 126.6201})  # fmt: skip
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        viewer = ViewerPeer(world)
        try:
            await page.goto(f"{base}/field")
            await page.fill("input[name=secret]", world.device_secret)
            await page.click("#device button[type=submit]")
            await page.wait_for_function("() => window.fieldState?.link === 'live'", timeout=20_000)
            hub = world.client.app[MEDIA]
            await eventually(lambda: hub.publisher(UnitId(UNIT)) is not None, what="the unit's WHIP session")
            publisher = hub.publisher(UnitId(UNIT))
            assert publisher is not None and publisher.peer_connection is not None
            recorder, before = publisher.recorder, remote_ufrag(publisher.peer_connection)
            await viewer.watch()
            await viewer.frames("video", 5)

            await page.evaluate("() => window.dispatchEvent(new Event('online'))")
            await page.wait_for_function("() => window.fieldState.restarts === 1", timeout=15_000)

            assert remote_ufrag(publisher.peer_connection) != before  # the browser's new ICE credentials
            heard = publisher.last_media
            await eventually(lambda: publisher.last_media > heard + 1.0, what="media after the restart")
            assert len(await viewer.frames("video", 10)) == 10
            assert hub.publisher(UnitId(UNIT)) is publisher and publisher.recorder is recorder
            assert await page.evaluate("() => window.fieldState.link") == "live" and problems == []
        finally:
            await viewer.close()
            await context.close()
            await browser.close()
            await asyncio.sleep(0)
