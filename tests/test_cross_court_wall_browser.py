"""A lower court's wall display in headless Chromium shows the upper court's operation its unit takes part in
(异地调度), and drops it when the unit is taken off, while the upper court's wall keeps it."""

from __future__ import annotations

from playwright.async_api import Browser, Page

from command_center.credentials import lookup_hash, new_device_secret
from core.ids import CourtId, UnitId
from persistence.models import Role, UnitKind
from tests.conftest import World
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

TARGET = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}


async def _wall(world: World, browser: Browser, username: str, problems: list[str]) -> Page:  # noqa: F811
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{username}: {error}"))
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", world.passwords[username])
    await page.click("button[type=submit]")
    await page.click("#wall-link")
    await page.wait_for_url(f"{base}/wall")
    await page.wait_for_function("() => window.wallState && window.wallState.connected")
    return page


async def test_a_lower_courts_wall_follows_the_upper_courts_operation(world: World, browser: Browser) -> None:  # noqa: F811
    await world.add_user("nangang", Role.OPERATOR, "HLJ0103")
    await world.store.add_unit(unit_id=UnitId("HLJ0103-U01"), name="南岗一号", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ0103"), secret_hash=lookup_hash(new_device_secret()))  # fmt: skip
    problems: list[str] = []
    lower = await _wall(world, browser, "nangang", problems)
    upper = await _wall(world, browser, "operator", problems)  # the intermediate court, HLJ01
    plan = {"kind": "search", "title": "联合搜查被执行人住所", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": ["HLJ0102-U01", "HLJ0103-U01"]}  # fmt: skip
    created = await world.client.post("/api/operations", json=plan, headers=world.auth("operator"))
    assert created.status == 201, await created.text()
    op_id = (await created.json())["operation"]["id"]
    shown = f"() => window.wallState.operations.has('{op_id}')"
    await lower.wait_for_function(shown)
    await upper.wait_for_function(shown)
    assert "联合搜查被执行人住所" in (await lower.text_content("#operations") or "")

    units = await world.client.put(f"/api/operations/{op_id}/units", json={"unit_ids": ["HLJ0102-U01"]},
                                   headers=world.auth("operator"))  # fmt: skip
    assert units.status == 200
    await lower.wait_for_function(f"() => !window.wallState.operations.has('{op_id}')")
    await upper.wait_for_function(f"() => window.wallState.operations.get('{op_id}')?.unit_ids.length === 1")
    assert await upper.evaluate(shown)
    assert problems == []
