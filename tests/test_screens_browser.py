"""The screens as each role sees them in headless Chromium (issue 16): only Chinese from the catalogue on every
page, navigation that follows the role, the same counts on the wall, the console and /api/stats, labelled units
with trails, units on the console's map, street-level tiles from the app's own archive with no network, and a
GCJ-02 configuration that places a published conversion vector where it belongs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.async_api import Browser, Page

from command_center.credentials import lookup_hash, new_device_secret
from config.settings import MapSettings
from core.ids import CourtId, UnitId
from persistence.models import UnitKind
from tests.conftest import AppFactory, World
from tests.test_live_tracking import open_unit, send
from tests.test_wall_display_browser import browser, chromium, fix  # noqa: F401 (fixtures)
from tests.tile_support import make_mbtiles

SHOTS = Path("/tmp/screens")
UNIT = "HLJ0102-U01"
#: Latin words a Chinese page may show: the language switch names the other language, and units of measure.
ALLOWED_WORDS = {"English", "km/h", "km", "m", "GiB"}
#: Published GCJ-02 vectors (gcoord's tests, hujiulong/gcoord test/unit/crs): WGS-84 (45, 123) is GCJ-02
#: (45.00197815, 123.00607541); GCJ-02 (45, 123) is WGS-84 (44.99804071, 122.99395597).
WGS_POINT = (45.0, 123.0)
GCJ_OF_WGS_POINT = (45.00197815, 123.00607541)
WGS_OF_GCJ_POINT = (44.99804071, 122.99395597)


class Screen:
    """One role's browser tab on the world's server, with what it requested and what went wrong in it."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base = page, base
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.problems.append(f"exception: {error}"))

    def outside(self) -> list[str]:
        local = ("127.0.0.1", "localhost")  # blob: URLs are tiles the page fetched from this server
        return [url for url in self.requests if not url.startswith("blob:") and urlparse(url).hostname not in local]

    async def open(self, path: str, ready: str) -> None:
        await self.page.goto(f"{self.base}{path}")
        try:
            await self.page.wait_for_function(ready)
        except Exception as exc:
            await self.page.screenshot(path=str(SHOTS / "not-ready.png"))
            state = await self.page.evaluate(f"({ready})()")
            raise AssertionError(f"{path} not ready ({ready} is {state}): {self.problems}") from exc


@pytest.fixture
async def screens(browser: Browser) -> AsyncIterator[Any]:  # noqa: F811
    SHOTS.mkdir(exist_ok=True)  # noqa: ASYNC240 (once, before any page)
    contexts = []

    async def as_role(world: World, role: str) -> Screen:
        context = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        context.set_default_timeout(15_000)
        contexts.append(context)
        screen = Screen(await context.new_page(), str(world.client.make_url("")).rstrip("/"))
        await screen.page.goto(f"{screen.base}/")
        await screen.page.fill("input[name=username]", role)
        await screen.page.fill("input[name=password]", world.passwords[role])
        await screen.page.click("button[type=submit]")
        await screen.page.wait_for_function("() => document.querySelector('#whoami').textContent !== ''")
        return screen

    try:
        yield as_role
    finally:
        for context in contexts:
            await context.close()


async def add_silent_unit(world: World) -> None:
    """A second unit that never reports: offline from the start."""
    await world.store.add_unit(unit_id=UnitId("HLJ0102-U02"), name="道里二号", kind=UnitKind.HANDHELD,
                               court_id=CourtId("HLJ0102"), secret_hash=lookup_hash(new_device_secret()))  # fmt: skip


async def latin_words(page: Page, data: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Latin words in the page's visible text, leaving out identifiers (a word with a digit: HLJ0102-U01, a credit
    code, a plate, an account) and the few words allowed in a Chinese page; `data` are names from the data."""
    words: list[str] = await page.evaluate(
        r"() => document.body.innerText.match(/[\w@\/.'-]*[A-Za-z][\w@\/.'-]*/g) || []"
    )
    return [w for w in words if not any(c.isdigit() for c in w) and w not in ALLOWED_WORDS and w not in data]


READY = {
    "/": "() => document.querySelector('#units tbody tr') !== null",
    "/wall": "() => window.wallState?.connected && window.wallState.units.size > 0",
    "/console": "() => window.consoleState?.refreshes >= 1 && window.consoleState.mapUnits >= 1",
    "/desk": "() => document.querySelector('#nav a') !== null && document.querySelector('#whoami').textContent",
    "/replay": "() => document.querySelector('#nav a') !== null",
    "/field": "() => document.querySelector('#link').textContent === '未连接'",
    "/ops": "() => window.opsState?.overview && document.querySelector('#nav a') !== null",
    "/entrustments": "() => window.entrustState?.refreshes >= 1 && document.querySelector('#nav a') !== null",
    "/rooms": "() => window.roomsState?.refreshes >= 1 && document.querySelector('#nav a') !== null",
}
REFUSED = "() => document.querySelector('#refused') !== null"


async def test_every_page_speaks_chinese_from_the_catalogue_for_every_role(world: World, screens: Any) -> None:
    unit = await open_unit(world)
    await send(unit, fix(1, 45.7600, 126.6200))
    await send(unit, fix(2, 45.7610, 126.6210, sos=True))  # an alarm on the wall, an entry in the duty log
    await add_silent_unit(world)
    courts = {court.id for court in await world.store.list_courts()}
    people = {user.display_name for user in await world.store.list_users(None)}  # the test users' names are Latin
    overview = await (await world.client.get("/api/ops/overview", headers=world.auth("admin"))).json()
    node = overview["node"]["id"].split(":")[0]  # the server's host name (host:port) on 运维
    ids = courts | people | {UNIT, "HLJ0102-U02", node}  # data, not interface
    seen: dict[str, list[str]] = {}
    pages = {"operator": ["/", "/wall", "/console", "/replay", "/entrustments", "/rooms", "/field"],
             "judge": ["/", "/wall", "/desk", "/console"],
             "admin": ["/desk", "/ops"]}  # fmt: skip
    for role, paths in pages.items():
        screen = await screens(world, role)
        for path in paths:
            refused = role == "judge" and path == "/console"
            judges_wall = role == "judge" and path == "/wall"
            ready = REFUSED if refused else "() => window.wallState?.connected" if judges_wall else READY[path]
            await screen.open(path, ready)  # a judge's wall shows no units (theirs are cases, not units)
            await screen.page.wait_for_timeout(300)  # texts filled after the data arrived
            await screen.page.screenshot(path=str(SHOTS / f"{role}{path.replace('/', '-') or '-'}.png"))
            foreign = await latin_words(screen.page, ids)
            seen[f"{role} {path}"] = foreign
        assert screen.problems == [] and screen.outside() == []
    assert {page: words for page, words in seen.items() if words} == {}


async def test_navigation_and_controls_follow_the_role(world: World, screens: Any) -> None:
    judge = await screens(world, "judge")
    offered = await judge.page.eval_on_selector_all("#pages a", "links => links.map(a => a.getAttribute('href'))")
    assert offered == ["/wall", "/desk", "/replay"]  # no console for a judge
    for path in ("/console", "/entrustments", "/rooms", "/ops"):
        await judge.open(path, REFUSED)
        assert await judge.page.text_content("#refused") == "当前角色（执行法官）不使用此页面"
    await judge.open("/desk", READY["/desk"])
    assert not await judge.page.is_disabled("#submit")
    assert "执行法官" in (await judge.page.text_content("#whoami") or "")
    await judge.page.click("#lang")  # the other language, from the same catalogue, and back
    assert await judge.page.title() == "Command Centre · Asset Queries"
    assert await judge.page.text_content("#submit") == "Query"
    assert "judge · judge ·" in (await judge.page.text_content("#whoami") or "")  # name · role, in English
    await judge.page.click("#lang")
    assert await judge.page.text_content("#submit") == "发起查询"

    admin = await screens(world, "admin")
    offered = await admin.page.eval_on_selector_all("#pages a", "links => links.map(a => a.getAttribute('href'))")
    assert offered == ["/wall", "/console", "/desk", "/replay", "/entrustments", "/rooms", "/ops"]
    await admin.open("/desk", READY["/desk"])
    assert await admin.page.is_disabled("#submit")  # only the case's judge asks
    assert await admin.page.text_content("#ask-error") == "只有本案承办法官可以发起查询"
    whoami = await admin.page.text_content("#whoami") or ""
    assert "系统管理员" in whoami and "哈尔滨市中级人民法院" in whoami and "HLJ" not in whoami

    # A refused action says why in Chinese, by the server's code and the role it names.
    response = await world.client.post("/api/units/HLJ0102-U01/tasks", headers=world.auth("judge"), json={})
    body = await response.json()
    assert response.status == 403 and body["error"]["details"]["role"] == "judge"
    said = await judge.page.evaluate(
        "async (error) => (await import('/static/lib/i18n.js')).errorText({ ...error, status: 403 })", body["error"]
    )
    assert said == "当前角色（执行法官）无权进行此操作"


async def test_wall_console_and_stats_count_online_the_same_way(world: World, screens: Any) -> None:
    unit = await open_unit(world)
    await send(unit, fix(1, 45.7600, 126.6200, sos=True))  # heard, and in SOS
    await add_silent_unit(world)
    stats = await (await world.client.get("/api/stats", headers=world.auth("operator"))).json()
    total = stats["total"]
    assert (total["units"], total["online"], total["sos"], total["offline"]) == (2, 1, 1, 1)

    operator = await screens(world, "operator")
    await operator.open("/wall", "() => window.wallState?.connected && window.wallState.units.size === 2")
    wall = {key: await operator.page.text_content(f"#count-{key}") for key in ("online", "on_site", "sos", "offline")}
    assert wall == {"online": str(total["online"]), "on_site": str(total["on_site"]), "sos": str(total["sos"]),
                    "offline": str(total["offline"])}  # fmt: skip

    await operator.open("/console", READY["/console"])
    row = operator.page.locator("#stats tr[data-court=HLJ0102] td")
    cells = [await row.nth(i).text_content() for i in range(6)]
    assert cells == ["哈尔滨市道里区人民法院", "2", str(total["online"]), "0", str(total["sos"]), str(total["offline"])]


async def test_the_wall_labels_units_and_draws_their_trails(world: World, screens: Any) -> None:
    unit = await open_unit(world)
    path = [(45.7600 + i * 0.0006, 126.6200 + i * 0.0008) for i in range(6)]
    operator = await screens(world, "operator")
    await operator.open("/wall", "() => window.wallState?.connected")
    await operator.page.evaluate("([lat, lon]) => window.wallMap.setView([lat, lon], 15, { animate: false })", path[2])
    for seq, (lat, lon) in enumerate(path, start=1):
        await send(unit, fix(seq, lat, lon))
    await operator.page.wait_for_function(f"() => window.wallState.units.get('{UNIT}')?.trail.length === 6")
    await operator.page.wait_for_function("() => window.wallState.labels >= 1")
    await operator.page.wait_for_timeout(600)  # the next paint
    # Between the first two fixes only the trail can be painted; right of the newest marker, the label.
    middle = ((path[0][0] + path[1][0]) / 2, (path[0][1] + path[1][1]) / 2)
    trail = await operator.page.evaluate("([lat, lon]) => window.wallState.paintedAt(lat, lon)", middle)
    assert trail[3] > 0, "no trail painted between the first two fixes"
    label = [await operator.page.evaluate(f"([lat, lon]) => window.wallState.paintedAt(lat, lon, {dx}, 0)", path[-1])
             for dx in range(14, 60)]  # fmt: skip
    assert any(pixel[3] > 0 for pixel in label), "no label painted beside the marker"
    attribution = await operator.page.text_content(".leaflet-control-attribution") or ""
    assert "Leaflet" not in attribution
    await operator.page.screenshot(path=str(SHOTS / "wall-labels-trails.png"))


async def test_the_console_map_shows_units_and_says_which_have_video(world: World, screens: Any) -> None:
    unit = await open_unit(world)
    await send(unit, fix(1, 45.7600, 126.6200))
    operator = await screens(world, "operator")
    await operator.open("/console", READY["/console"])
    assert await operator.page.evaluate("window.consoleState.mapUnits") == 1
    assert await operator.page.text_content("#video-list") == "无视频"
    label = operator.page.locator("#map .unit-label")
    assert "道里一号" in (await label.text_content() or "")


async def test_street_tiles_come_from_the_apps_archive_with_no_network(
    make_world: AppFactory, screens: Any, tmp_path: Path
) -> None:
    harbin = (45.757, 126.642)
    archive = make_mbtiles(tmp_path / "harbin.mbtiles", lat=harbin[0], lon=harbin[1], zooms=range(16, 18),
                           rgb=(201, 111, 31), reach=5)  # fmt: skip
    world = await make_world(
        maps=MapSettings(tile_archive=archive, zoom=17, center_lat=harbin[0], center_lon=harbin[1])
    )
    operator = await screens(world, "operator")
    await operator.open("/replay", "() => document.querySelectorAll('#map img.leaflet-tile-loaded').length >= 8")
    assert await operator.page.evaluate("window.replayMap.getZoom()") == 17
    colours = await operator.page.evaluate("""() => {
        const img = document.querySelector('#map img.leaflet-tile-loaded');
        const canvas = Object.assign(document.createElement('canvas'), { width: 256, height: 256 });
        const ctx = canvas.getContext('2d');
        ctx.drawImage(img, 0, 0);
        return [[...ctx.getImageData(20, 20, 1, 1).data], [...ctx.getImageData(20, 128, 1, 1).data]];
    }""")
    assert colours == [[201, 111, 31, 255], [255, 255, 255, 255]]  # the archive's ground and its street
    box = await operator.page.locator("#map").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.7
    covering = await operator.page.evaluate(
        f"[...document.querySelectorAll('#map img.leaflet-tile-loaded')]"
        f".filter(t => {{ const r = t.getBoundingClientRect();"
        f" return r.left <= {x} && {x} < r.right && r.top <= {y} && {y} < r.bottom; }}).length"
    )
    assert covering >= 1  # the archive's tiles fill the map, not the outlines
    await operator.page.screenshot(path=str(SHOTS / "replay-street-tiles.png"))
    assert await operator.page.text_content(".leaflet-control-attribution") == "测试街道图"
    tiles = [url for url in operator.requests if "/api/map/tiles/" in url]
    assert tiles and all("token" not in url and "ticket" not in url for url in tiles)
    assert operator.outside() == [] and operator.problems == []


async def test_gcj02_tiles_place_a_published_vector_and_clicks_come_back_in_wgs84(
    make_world: AppFactory, screens: Any
) -> None:
    world = await make_world(maps=MapSettings(tile_datum="gcj02", center_lat=45.0, center_lon=123.0, zoom=12))
    operator = await screens(world, "operator")
    await operator.open("/wall", "() => window.wallState?.connected")
    converted = await operator.page.evaluate("""async () => {
        const datum = await import('/static/lib/datum.js');
        return [datum.wgsToGcj(45, 123), datum.gcjToWgs(45, 123), datum.wgsToGcj(51.5, -0.12)];
    }""")
    assert converted[0] == pytest.approx(GCJ_OF_WGS_POINT, abs=1e-8)
    assert converted[1] == pytest.approx(WGS_OF_GCJ_POINT, abs=5e-7)
    assert converted[2] == [51.5, -0.12]  # outside China: no shift

    unit = await open_unit(world)
    await send(unit, fix(1, *WGS_POINT))
    await operator.page.wait_for_function(f"() => window.wallState.markerAt('{UNIT}') !== null")
    drawn = await operator.page.evaluate(f"window.wallState.markerAt('{UNIT}')")
    assert (drawn["lat"], drawn["lon"]) == pytest.approx(GCJ_OF_WGS_POINT, abs=1e-8)

    # A click on the console's map where the GCJ-02 tiles show the point becomes the WGS-84 point again.
    await operator.open("/console", READY["/console"])
    point = await operator.page.evaluate(
        "([lat, lon]) => { const m = window.consoleMap; m.setView([lat, lon], 18, { animate: false });"
        " const p = m.latLngToContainerPoint([lat, lon]); const r = m.getContainer().getBoundingClientRect();"
        " return [r.left + p.x, r.top + p.y]; }",
        list(GCJ_OF_WGS_POINT),
    )
    await operator.page.mouse.click(point[0], point[1])
    target = await operator.page.evaluate("window.consoleState.target")
    assert target == pytest.approx(list(WGS_POINT), abs=1e-5)
    assert operator.problems == []


def test_no_page_script_keeps_its_own_copy_of_the_shared_helpers() -> None:
    """One front-end: the API client, the catalogue, the map set-up and the screen socket live in web/lib."""
    web = Path(__file__).resolve().parent.parent / "command_center" / "web"
    copies = re.compile(r"const TEXT = |async function api\(|function setUpMap\(\) \{\n  const config|new WebSocket\(")
    for script in web.glob("*.js"):
        assert not copies.search(script.read_text(encoding="utf-8")), f"{script.name} keeps its own copy"
    for page in web.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert '<script src="/static/' not in html, f"{page.name} loads a classic script (modules only)"


async def test_every_catalogue_section_says_the_same_things_in_both_languages(world: World, screens: Any) -> None:
    """A key in one language only would show its raw name to the users of the other."""
    screen = await screens(world, "operator")
    missing = await screen.page.evaluate(
        """async () => {
          const { CATALOGUE } = await import('/static/lib/catalogue.js');
          const only = (a, b) => Object.keys(a).filter((key) => !(key in b));
          return Object.entries(CATALOGUE).flatMap(([section, { zh, en }]) => [
            ...only(zh, en).map((key) => `${section}.${key}: zh only`),
            ...only(en, zh).map((key) => `${section}.${key}: en only`),
          ]);
        }"""
    )
    assert missing == []
