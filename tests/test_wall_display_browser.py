"""The wall display in a real browser (Debian's Chromium via Playwright) against the real server: log in on the
start page, open the wall, and watch units that report over the real unit socket appear, move, call for help
and go silent; cut the wall's link and see it resume without a gap. Nothing may leave the machine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.async_api import Browser, Page, WebSocket, async_playwright

from operations.models import OperationStatus
from tests.conftest import World
from tests.test_live_tracking import open_screen, open_unit, send

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOT = Path("/tmp/wall.png")
UNIT = "HLJ0102-U01"


@dataclass
class Watched:
    """A page and everything it did that a test checks afterwards."""

    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)  # uncaught in the page
    console_errors: list[str] = field(default_factory=list)  # CSP refusals, failed loads, ...
    failed: list[str] = field(default_factory=list)  # responses with an error status
    sent: list[dict[str, Any]] = field(default_factory=list)  # what the page sent on its screen sockets

    def outside(self) -> list[str]:
        return [url for url in self.requests if urlparse(url).hostname not in ("127.0.0.1", "localhost")]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need /usr/bin/chromium: run scripts/setup.sh --dev as root (apt: chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def watched(world: World, browser: Browser) -> AsyncIterator[Watched]:
    # The server's Content-Security-Policy stays on: a page that breaks it shows up in `errors`.
    context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    seen = Watched(page, str(world.client.make_url("")).rstrip("/"))
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("pageerror", lambda error: seen.exceptions.append(str(error)))
    page.on("response", lambda r: seen.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: seen.console_errors.append(f"{m.text} {m.location}") if m.type == "error" else None)

    def on_socket(ws: WebSocket) -> None:
        if "/api/screen/ws" in ws.url:
            ws.on("framesent", lambda payload: seen.sent.append(json.loads(payload)))

    page.on("websocket", on_socket)
    try:
        yield seen
    finally:
        await context.close()


async def open_wall(seen: Watched, world: World) -> None:
    """Log in on the start page as the operator, then follow its link to the wall."""
    page = seen.page
    await page.goto(f"{seen.base}/")
    await page.fill("input[name=username]", "operator")
    await page.fill("input[name=password]", world.passwords["operator"])
    await page.click("button[type=submit]")
    await page.click("#wall-link")
    await page.wait_for_url(f"{seen.base}/wall")
    await page.wait_for_function("() => window.wallState && window.wallState.connected")


def fix(seq: int, lat: float, lon: float, *, sos: bool = False, fix_time_ms: int | None = None) -> dict[str, Any]:
    return {"seq": seq, "fix_time_ms": fix_time_ms or int(time.time() * 1000), "lat": lat, "lon": lon,
            "speed_mps": 1.3, "battery_pct": 64, "sos": sos}  # fmt: skip


async def marker(page: Page, unit_id: str) -> dict[str, float] | None:
    """Where the unit's marker is drawn (map coordinates and pixels), read from Leaflet, not from the data."""
    found: dict[str, float] | None = await page.evaluate("(id) => window.wallState.markerAt(id)", unit_id)
    return found


async def counters(page: Page) -> dict[str, str]:
    keys = ("online", "on_site", "sos", "offline")
    return {key: await page.text_content(f"#count-{key}") or "" for key in keys}


async def test_the_wall_shows_a_unit_move_and_call_for_help(world: World, watched: Watched) -> None:
    page = watched.page
    await open_wall(watched, world)
    # The unit is registered but has never reported: counted offline, nothing drawn.
    await page.wait_for_function("() => document.querySelector('#count-offline').textContent === '1'")
    assert await counters(page) == {"online": "0", "on_site": "0", "sos": "0", "offline": "1"}
    assert await marker(page, UNIT) is None

    unit = await open_unit(world)
    start = int(time.time() * 1000)
    await send(unit, fix(1, 45.7570, 126.6200, fix_time_ms=start))
    await page.wait_for_function(f"() => window.wallState.markerAt('{UNIT}') !== null")
    first = await marker(page, UNIT)
    assert first is not None and (first["lat"], first["lon"]) == (45.757, 126.62)
    await page.wait_for_function("() => document.querySelector('#count-online').textContent === '1'")
    assert await counters(page) == {"online": "1", "on_site": "0", "sos": "0", "offline": "0"}

    for seq in range(2, 7):
        await send(unit, fix(seq, 45.7570 + seq * 0.002, 126.6200 + seq * 0.003, fix_time_ms=start + seq * 1000))
    await page.wait_for_function(f"() => window.wallState.units.get('{UNIT}').trail.length === 6")
    # Painting is paced (a few times a second): wait for the marker to be drawn where the unit now is.
    await page.wait_for_function(f"() => Math.abs(window.wallState.markerAt('{UNIT}').lat - 45.769) < 1e-9")
    moved = await marker(page, UNIT)
    assert moved is not None
    assert abs(moved["lat"] - 45.769) < 1e-9 and abs(moved["lon"] - 126.638) < 1e-9
    assert moved["x"] > first["x"] + 20 and moved["y"] < first["y"] - 20  # north-east on the screen
    state = await page.evaluate(f"(() => {{ const u = window.wallState.units.get('{UNIT}'); "
                                "return {status: u.status, trail: u.trail.map((p) => p[1])}; })()")  # fmt: skip
    assert state["status"] == "available"
    assert state["trail"] == [pytest.approx(45.757 + seq * 0.002) for seq in [0, 2, 3, 4, 5, 6]]

    # A click on the marker tells who it is.
    box = await page.locator("#map").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + moved["x"], box["y"] + moved["y"])
    popup = page.locator(".leaflet-popup-content")
    await popup.wait_for()
    text = await popup.text_content() or ""
    for part in ("道里一号", UNIT, "哈尔滨市道里区人民法院", "待命", "4.7 km/h", "64%", "定位时间"):
        assert part in text, f"{part!r} not in the popup: {text!r}"

    # SOS: counter, alarm, a pulsing marker, the siren, and the open popup follows.
    await page.click("#sound")
    await page.wait_for_function("() => document.querySelector('#sound').textContent === '声音已开启'")
    await send(unit, fix(7, 45.770, 126.640, sos=True, fix_time_ms=start + 7000))
    await page.wait_for_function("() => document.querySelector('#count-sos').textContent === '1'")
    alarm = await page.text_content("#alarms li.sos.raised") or ""
    assert "道里一号" in alarm and "紧急求救" in alarm
    assert await page.evaluate("window.wallState.sirens") >= 1
    await page.wait_for_function(f"() => window.wallState.markerAt('{UNIT}').radius > 10")
    await page.wait_for_function(f"() => window.wallState.markerAt('{UNIT}').radius < 10")
    assert "求救" in (await popup.text_content() or "")
    await page.screenshot(path=str(SCREENSHOT))

    await page.click("#lang")
    assert await page.text_content("#counters .sos span") == "SOS"
    assert "SOS raised" in (await page.text_content("#alarms li.sos.raised") or "")

    # The operator handles it from the wall: acknowledged, then resolved, which also clears the unit's SOS.
    await page.click("#alarms li.sos button.acknowledge")
    await page.wait_for_selector("#alarms li.sos.acknowledged")
    [stored] = await world.store.list_alarms(court_ids=None, live_only=True)
    assert stored.acknowledged_by is not None
    await page.click("#alarms li.sos button.resolve")
    await page.wait_for_selector("#alarms li.none")
    await page.wait_for_function("() => document.querySelector('#count-sos').textContent === '0'")

    assert watched.outside() == [], f"the page reached outside the machine: {watched.outside()}"
    assert any(url.endswith("/vendor/leaflet/leaflet.js") for url in watched.requests)
    assert any(url.endswith("/static/basemap/districts.geojson") for url in watched.requests)
    assert watched.exceptions == [] and watched.console_errors == [], watched.failed


async def test_the_wall_resumes_after_a_cut_and_shows_silent_units(world: World, watched: Watched) -> None:
    page = watched.page
    created = await world.client.post(
        "/api/units", headers=world.auth("admin"),
        json={"id": "HLJ0102-Q1", "name": "快速离线", "kind": "handheld", "court_id": "HLJ0102",
              "offline_after_seconds": 0.5},
    )  # fmt: skip
    assert created.status == 201
    quick = await world.client.ws_connect(
        "/api/telemetry/ws", headers={"Authorization": f"Bearer {(await created.json())['secret']}"}
    )
    await open_wall(watched, world)
    topics = ["units", "alarms", "operations", "entrustments"]
    assert watched.sent[0] == {"type": "subscribe", "topics": topics, "resume": {}}

    # A unit that reports once and goes silent: online, then offline with an alarm.
    await send(quick, fix(1, 45.74, 126.66))
    await page.wait_for_function("() => window.wallState?.units.get('HLJ0102-Q1')?.status === 'available'")
    await page.wait_for_selector("#alarms li.offline.raised")
    assert "快速离线" in (await page.text_content("#alarms li.offline.raised") or "")
    await page.wait_for_function("() => document.querySelector('#count-offline').textContent === '2'")

    # Cut the wall's link while a unit moves; it comes back and fills the gap from where it stopped.
    unit = await open_unit(world)
    start = int(time.time() * 1000)
    await send(unit, fix(1, 45.750, 126.600, fix_time_ms=start))
    await page.wait_for_function(f"() => window.wallState.units.get('{UNIT}')?.trail.length === 1")
    witness = await open_screen(world)
    await page.context.set_offline(True)
    await page.evaluate("window.wallState.dropLink()")
    await page.wait_for_function("() => !window.wallState.connected")
    for seq in (2, 3, 4):
        await send(unit, fix(seq, 45.750 + seq * 0.001, 126.600, fix_time_ms=start + seq * 1000))
    await witness.unit_update(UNIT, lambda v: v["position"]["seq"] == 4)
    await asyncio.sleep(0.7)  # the page tries (and fails) to reconnect while cut off
    assert not await page.evaluate("window.wallState.connected")
    await page.context.set_offline(False)

    await page.wait_for_function(f"() => window.wallState.units.get('{UNIT}')?.trail.length === 4", timeout=20_000)
    trail = await page.evaluate(f"window.wallState.units.get('{UNIT}').trail.map((p) => p[0])")
    assert trail == [start, start + 2000, start + 3000, start + 4000]  # the frames missed, not just the latest
    subscribes = [m for m in watched.sent if m.get("type") == "subscribe"]
    assert len(subscribes) >= 2 and subscribes[-1]["resume"].get("units.HLJ0102", 0) > 0
    assert await page.evaluate("window.wallState.connected")
    assert watched.outside() == []
    assert watched.exceptions == []
    # While cut off, the browser reports the failed reconnects and session check; nothing else may fail.
    cut_off = ("ERR_INTERNET_DISCONNECTED", "WebSocket connection to")
    assert [e for e in watched.console_errors if not any(c in e for c in cut_off)] == []


async def test_the_wall_sends_a_visitor_without_a_session_to_log_in(world: World, watched: Watched) -> None:
    await watched.page.goto(f"{watched.base}/wall")
    await watched.page.wait_for_url(f"{watched.base}/")
    await watched.page.wait_for_selector("#login", state="visible")
    assert watched.exceptions == [] and watched.console_errors == [], watched.failed


async def test_an_operation_that_starts_opens_on_the_wall(world: World, watched: Watched) -> None:
    page = watched.page
    fence = {"type": "Feature", "properties": {"name": "禁入区", "kind": "no_go"}, "geometry": {"type": "Polygon",
             "coordinates": [[[126.60, 45.75], [126.61, 45.75], [126.61, 45.756], [126.60, 45.75]]]}}  # fmt: skip
    assert (await world.client.post("/api/geofences", json=fence, headers=world.auth("operator"))).status == 201
    await open_wall(watched, world)
    await page.wait_for_selector("#operations li.none")
    await page.wait_for_function("() => window.wallState?.geofences === 1")  # drawn on the map
    target = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}
    created = await world.client.post("/api/operations", headers=world.auth("operator"), json={
        "kind": "search", "title": "搜查被执行人住所", "court_id": "HLJ0102", "onsite_commander": "李警官",
        "target": target, "unit_ids": []})  # fmt: skip
    op = (await created.json())["operation"]
    await page.wait_for_selector(f"#operations li.planned[data-operation-id='{op['id']}']")
    assert "搜查 · 搜查被执行人住所 · 准备中" in (await page.text_content("#operations li") or "")
    await world.client.post(f"/api/operations/{op['id']}/start", json={}, headers=world.auth("operator"))
    await page.wait_for_selector("#operations li.under_way")
    # the wall brings it into view: the map's centre moves to the target
    await page.wait_for_function(
        "() => { const c = window.wallMap.getCenter(); return Math.abs(c.lat - 45.7612) < 0.001"
        " && Math.abs(c.lng - 126.6201) < 0.001; }"
    )
    await page.screenshot(path="/tmp/wall-operation.png")
    assert watched.exceptions == [] and watched.console_errors == [], watched.failed


async def test_a_track_replays_with_play_speed_and_follow(world: World, watched: Watched) -> None:
    page = watched.page
    unit = await open_unit(world)
    start = int(time.time() * 1000) - 600_000  # ten minutes ago, one fix every 10 s going north-east
    for seq in range(1, 31):
        await send(unit, fix(seq, 45.75 + seq * 0.0003, 126.60 + seq * 0.0002, fix_time_ms=start + seq * 10_000))
    await page.goto(f"{watched.base}/")
    await page.fill("input[name=username]", "operator")
    await page.fill("input[name=password]", world.passwords["operator"])
    await page.click("button[type=submit]")
    await page.click("#replay-link")
    await page.wait_for_url(f"{watched.base}/replay")
    await page.select_option("#unit", UNIT)
    await page.click("#load")
    await page.wait_for_function("() => window.replayState?.tracks.length === 1")
    assert "30 个定位点" in (await page.text_content("#info") or "")
    await page.select_option("#speed", "60")  # 10 s between fixes: about one fix every 170 ms of replay
    await page.click("#play")
    await page.wait_for_function("() => window.replayState?.tracks[0]?.index >= 5")
    assert await page.text_content("#play") == "暂停"
    # follow: the map keeps the unit in view while it plays
    await page.wait_for_function(
        "() => { const t = window.replayState.tracks[0], p = t.points[t.index];"
        " return window.replayMap.getBounds().contains([p.lat, p.lon]); }"
    )
    await page.click("#play")  # pause
    paused_at = await page.evaluate("window.replayState.tracks[0].index")
    await page.wait_for_timeout(500)
    assert await page.evaluate("window.replayState.tracks[0].index") == paused_at
    await page.fill("#timeline", "1000")  # drag to the end
    await page.wait_for_function("() => window.replayState?.tracks[0]?.index === 29")
    await page.screenshot(path="/tmp/replay.png")

    # an operation's units replay together over the operation's time
    second = await world.client.post("/api/units", headers=world.auth("admin"), json={
        "id": "HLJ0102-U02", "name": "道里二号", "kind": "handheld", "court_id": "HLJ0102"})  # fmt: skip
    other = await world.client.ws_connect(
        "/api/telemetry/ws", headers={"Authorization": f"Bearer {(await second.json())['secret']}"}
    )
    for seq in range(1, 11):
        await send(other, fix(seq, 45.77 - seq * 0.0003, 126.63, fix_time_ms=start + seq * 20_000))
    created = await world.client.post("/api/operations", headers=world.auth("operator"), json={
        "kind": "search", "title": "联合搜查", "court_id": "HLJ0102", "onsite_commander": "李警官",
        "target": {"lat": 45.76, "lon": 126.62}, "unit_ids": [UNIT, "HLJ0102-U02"]})  # fmt: skip
    op = (await created.json())["operation"]
    await world.store.move_operation(op["id"], OperationStatus.UNDER_WAY, allowed=[OperationStatus.PLANNED],
                                     at_ms=start)  # fmt: skip
    await page.goto(f"{watched.base}/replay?operation={op['id']}")
    await page.wait_for_function("() => window.replayState?.tracks.length === 2")
    assert "2 × 40 个定位点" in (await page.text_content("#info") or "")
    await page.select_option("#speed", "60")
    await page.click("#play")
    await page.wait_for_function("() => window.replayState?.tracks.every((t) => t.index >= 3)")
    assert watched.outside() == [] and watched.exceptions == [] and watched.console_errors == [], watched.failed


async def test_the_console_shows_figures_sends_tasks_keeps_duty_and_downloads_reports(
    world: World, watched: Watched
) -> None:
    page = watched.page
    unit = await open_unit(world)
    await send(unit, fix(1, 45.7600, 126.6200, sos=True))
    created = await world.client.post("/api/operations", headers=world.auth("operator"), json={
        "kind": "search", "title": "搜查被执行人住所", "court_id": "HLJ0102", "onsite_commander": "李警官",
        "target": {"lat": 45.76, "lon": 126.62}, "unit_ids": []})  # fmt: skip
    assert created.status == 201
    await page.goto(f"{watched.base}/")
    await page.fill("input[name=username]", "operator")
    await page.fill("input[name=password]", world.passwords["operator"])
    await page.click("button[type=submit]")
    await page.click("#console-link")
    await page.wait_for_url(f"{watched.base}/console")
    await page.wait_for_function("() => window.consoleState?.refreshes >= 1")
    row = page.locator("#stats tr[data-court=HLJ0102] td")
    assert [await row.nth(i).text_content() for i in (1, 4, 6)] == ["1", "1", "1"]  # 1 unit, in SOS, 1 alarm open

    await page.click("#sign-in")  # not on the roster today: the reason is shown
    await page.wait_for_function(
        "() => document.querySelector('#message').textContent.includes('今日没有值班岗位')"
    )  # said by its code, in Chinese
    await page.fill("#note-form input[name=text]", "接班：一名单兵求救，已联系")
    await page.click("#note-form button[type=submit]")
    await page.wait_for_selector("#log li:has-text('接班：一名单兵求救')")

    await page.fill("#task-form input[name=lat]", "45.761")
    await page.fill("#task-form input[name=lon]", "126.621")
    await page.fill("#task-form input[name=title]", "前往现场支援")
    await page.click("#task-form button[type=submit]")
    task_row = page.locator("#tasks tr", has_text="前往现场支援")
    await task_row.wait_for()
    assert "已下发" in (await task_row.text_content() or "")  # the unit's socket is open: delivered at once

    operation_id = (await created.json())["operation"]["id"]
    async with page.expect_download() as download_info:
        await page.locator(f"#operations tr[data-operation='{operation_id}'] button.report").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".html")
    saved = await download.path()
    assert "搜查被执行人住所" in saved.read_text(encoding="utf-8")
    # a no-go fence drawn on the map: three corners clicked, named, saved
    box = await page.locator("#map").bounding_box()
    assert box is not None
    await page.click("#draw")
    for dx, dy in ((0.3, 0.3), (0.6, 0.3), (0.45, 0.7)):
        await page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
    await page.fill("#fence-name", "被执行人住所禁入区")
    await page.click("#save-fence")
    await page.wait_for_selector("#fences li:has-text('被执行人住所禁入区')")
    [stored] = await world.store.list_geofences()
    assert stored.kind == "no_go" and len(stored.geometry["coordinates"][0]) == 4  # closed ring of 3 corners

    # an operation planned from the console: target clicked on the map, a unit chosen, then started
    await page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    await page.fill("#plan-form input[name=title]", "查封车辆")
    await page.fill("#plan-form input[name=onsite]", "王警官")
    await page.select_option("#plan-form select[name=units]", UNIT)
    await page.click("#plan-form button[type=submit]")
    planned = page.locator("#operations tr", has_text="查封车辆")
    await planned.wait_for()
    await planned.locator("button.start").click()
    await page.locator("#operations tr", has_text="查封车辆").locator(".status.under_way").wait_for()
    ops = await world.store.list_operations(court_ids=None, statuses=None)
    started = next(o for o in ops if o.title == "查封车辆")
    assert started.unit_ids == (UNIT,) and started.court_id == "HLJ0102" and started.started_ms is not None

    await page.screenshot(path="/tmp/console.png")
    refused = "/api/duty/sign-in"  # the deliberate 409 above is the only failed request
    assert [f for f in watched.failed if refused not in f] == []
    assert [e for e in watched.console_errors if refused not in e] == []
    assert watched.outside() == [] and watched.exceptions == []


async def test_the_wall_lists_the_query_watchs_alarms_by_judge(world: World, watched: Watched) -> None:
    from alarms.models import AlarmKind
    from command_center.keys import ALARMS
    from core.ids import CourtId

    page = watched.page
    await open_wall(watched, world)
    details = {"judge_id": 3, "judge_name": "王法官", "count": 21, "minutes": 10, "query_id": "q1"}
    await world.client.app[ALARMS].raise_(AlarmKind.QUERY_BURST, "3", court_id=CourtId("HLJ01"), details=details)
    await page.wait_for_selector("#alarms li.query_burst.raised")
    text = await page.text_content("#alarms li.query_burst.raised") or ""
    assert "查控频次异常" in text and "王法官 · 21" in text
    assert watched.exceptions == [] and watched.console_errors == []


async def test_the_wall_opens_its_socket_with_a_ticket_and_leaves_when_its_session_is_revoked(
    world: World, watched: Watched
) -> None:
    """No token in the socket's URL (a single-use ticket instead); revoking the operator's sessions closes
    the wall's socket (4401) and the page goes back to the login."""
    sockets: list[str] = []
    watched.page.on("websocket", lambda ws: sockets.append(ws.url))
    await open_wall(watched, world)
    assert sockets and all("ticket=cc_t_" in url and "token" not in url for url in sockets), sockets
    operator = await world.store.find_user("operator")
    assert operator is not None
    revoked = await world.client.post(f"/api/users/{operator.id}/revoke-sessions", headers=world.auth("admin"))
    assert revoked.status == 200
    await watched.page.wait_for_url(f"{watched.base}/")
    assert await watched.page.evaluate("() => sessionStorage.getItem('token')") is None
    assert not watched.exceptions
