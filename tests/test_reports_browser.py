"""Map reports (folium) as a person gets them: downloaded from the API, opened from disk in Chromium with the
network out of reach, showing the tracks, the stop, the target and the timeline."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Browser

from operations.models import OperationStatus
from tests.conftest import World
from tests.test_live_tracking import fix, open_unit, send
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

UNIT = "HLJ0102-U01"
_UNDER_WAY = OperationStatus.UNDER_WAY
SCREENSHOT = Path("/tmp/report.png")


async def test_an_operation_report_opens_offline(world: World, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    target = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}
    created = await world.client.post("/api/operations", headers=world.auth("operator"), json={
        "kind": "seizure", "title": "查封被执行人车辆", "court_id": "HLJ0102", "onsite_commander": "李警官",
        "target": target, "unit_ids": [UNIT]})  # fmt: skip
    op = (await created.json())["operation"]
    await world.client.post(f"/api/operations/{op['id']}/start", json={}, headers=world.auth("operator"))
    unit = await open_unit(world)
    start = int(time.time() * 1000) - 15 * 60_000  # the operation's clock: fixes from a quarter of an hour ago
    await world.store.move_operation(op["id"], _UNDER_WAY, allowed=[_UNDER_WAY], at_ms=start - 1)  # began then
    for seq in range(1, 21):  # drive to the target, a fix every 5 s ...
        await send(
            unit, fix(seq, lat=45.745 + seq * 0.0008, lon=126.605 + seq * 0.0008) | {"fix_time_ms": start + seq * 5_000}
        )
    for minute in range(6):  # ... and stay there for five minutes
        at = start + 110_000 + minute * 60_000
        await send(unit, fix(21 + minute, lat=45.7612, lon=126.6201) | {"fix_time_ms": at})
    response = await world.client.get(f"/api/reports/operations/{op['id']}", headers=world.auth("operator"))
    assert response.status == 200 and response.content_type == "text/html"
    assert "attachment" in response.headers["Content-Disposition"]
    document = await response.text()
    assert "查封被执行人车辆" in document and "https://cdn" not in document
    assert "停留 5 分钟" in document  # the stop at the target was found
    path = tmp_path / "report.html"
    path.write_text(document, encoding="utf-8")

    context = await browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    page = await context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(path.as_uri())
        await page.wait_for_selector(".leaflet-container")
        await page.wait_for_timeout(600)  # fitting the view to the track animates the zoom
        await page.wait_for_function("() => !document.querySelector('.leaflet-zoom-anim')")
        paths = await page.locator("path.leaflet-interactive").count()
        assert paths >= 4, paths  # the track, its start/end/stop markers, the target and its circle
        assert "李警官" in (await page.text_content("body") or "")
        await page.screenshot(path=str(SCREENSHOT))
        assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
        assert problems == []
    finally:
        await context.close()


async def test_bad_report_requests_are_refused(world: World) -> None:
    headers = world.auth("operator")
    for query, words in [("", "unit_ids"), (f"unit_ids={UNIT}", "since_ms is required"),
                         (f"unit_ids={UNIT}&since_ms=0&until_ms=999999999999", "at most 24 hours")]:  # fmt: skip
        bad = await world.client.get(f"/api/reports/units?{query}", headers=headers)
        assert bad.status == 422 and words in (await bad.json())["error"]["message"]
    missing = await world.client.get("/api/reports/operations/nope", headers=headers)
    assert missing.status == 404
    judge = await world.client.get("/api/reports/cases/abc", headers=world.auth("judge"))
    assert judge.status == 422
