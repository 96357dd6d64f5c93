"""The wall display in a real browser (Debian's Chromium via Playwright): log in, open the wall, and
watch a unit that reports over the real unit socket appear and move. Nothing may leave the machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import World
from tests.test_live_tracking import open_unit, send

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOT = Path("/tmp/wall.png")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (scripts/setup.sh --dev)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(page: Page, base: str, world: World) -> None:
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", "operator")
    await page.fill("input[name=password]", world.passwords["operator"])
    await page.click("button[type=submit]")
    await page.wait_for_selector("#wall-link", state="visible")


def fix(seq: int, lat: float, lon: float) -> dict[str, object]:
    return {"seq": seq, "fix_time_ms": int(time.time() * 1000), "lat": lat, "lon": lon, "speed_mps": 1.3,
            "battery_pct": 64}  # fmt: skip


async def test_the_wall_shows_a_unit_move(world: World, browser: Browser) -> None:
    base = str(world.client.make_url("")).rstrip("/")
    # bypass_csp lets Playwright evaluate its probes; the page itself still loads only from this server,
    # which the request log below checks.
    context = await browser.new_context(viewport={"width": 1600, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await log_in(page, base, world)
    await page.click("#wall-link")
    await page.wait_for_function("window.wallState && window.wallState.connected")

    unit = await open_unit(world)
    await send(unit, fix(1, 45.7570, 126.6200))
    await page.wait_for_function("window.wallState.units.get('HLJ0102-U01')?.lat === 45.757")
    first = await page.evaluate(
        "(() => { const u = window.wallState.units.get('HLJ0102-U01'); return [u.lat, u.lon, u.status]; })()"
    )
    assert first == [45.757, 126.62, "available"]
    for seq in range(2, 7):
        await send(unit, fix(seq, 45.7570 + seq * 0.002, 126.6200 + seq * 0.003))
        await asyncio.sleep(0.15)
    await page.wait_for_function("window.wallState.units.get('HLJ0102-U01')?.trail.length >= 6")
    moved = await page.evaluate(
        "(() => { const u = window.wallState.units.get('HLJ0102-U01'); return [u.lat, u.lon]; })()"
    )
    assert moved == [pytest.approx(45.769), pytest.approx(126.638)]
    assert await page.text_content("#count-online") == "1"

    await send(unit, fix(7, 45.770, 126.640) | {"sos": True})
    await page.wait_for_function("document.querySelector('#count-sos').textContent === '1'")
    await page.wait_for_selector("#alarms li.sos")
    assert "紧急求救" in (await page.text_content("#alarms li.sos") or "")
    await page.screenshot(path=str(SCREENSHOT))

    outside = [url for url in requests if urlparse(url).hostname not in ("127.0.0.1", "localhost")]
    assert outside == [], f"the page reached outside the machine: {outside}"
    assert any("/vendor/leaflet/leaflet.js" in url for url in requests)
    assert errors == []
