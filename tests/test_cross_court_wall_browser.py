"""异地调度 in headless Chromium: the intermediate court's centre plans an operation with units of two basic
courts from its console; a basic court's wall shows it, and drops it when its unit is taken off, while the
upper court's wall keeps it."""

from __future__ import annotations

from playwright.async_api import Browser, Page

from command_center.credentials import lookup_hash, new_device_secret
from core.ids import CourtId, UnitId
from persistence.models import Role, UnitKind
from tests.conftest import World
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)


async def _open(world: World, browser: Browser, username: str, problems: list[str], page_name: str = "wall") -> Page:  # noqa: F811
    """Log in on the start page as ``username`` (a context of its own) and follow its link to the wall or console."""
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{username}: {error}"))
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", world.passwords[username])
    await page.click("button[type=submit]")
    await page.click(f"#{page_name}-link")
    await page.wait_for_url(f"{base}/{page_name}")
    ready = (
        "window.wallState && window.wallState.connected"
        if page_name == "wall"
        else "window.consoleState?.refreshes >= 1"
    )
    await page.wait_for_function(f"() => {ready}")
    return page


async def test_a_lower_courts_wall_follows_the_upper_courts_operation(world: World, browser: Browser) -> None:  # noqa: F811
    await world.add_user("nangang", Role.OPERATOR, "HLJ0103")
    await world.store.add_unit(unit_id=UnitId("HLJ0103-U01"), name="南岗一号", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ0103"), secret_hash=lookup_hash(new_device_secret()))  # fmt: skip
    problems: list[str] = []
    lower = await _open(world, browser, "nangang", problems)
    upper = await _open(world, browser, "operator", problems)  # the intermediate court, HLJ01
    console = await _open(world, browser, "operator", problems, "console")  # its console, beside the wall
    box = await console.locator("#map").bounding_box()
    assert box is not None
    await console.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)  # the target
    await console.fill("#plan-form input[name=title]", "联合搜查被执行人住所")
    await console.fill("#plan-form input[name=onsite]", "王警官")
    await console.select_option("#plan-form select[name=units]", ["HLJ0102-U01", "HLJ0103-U01"])
    await console.click("#plan-form button[type=submit]")
    await console.locator("#operations tr", has_text="联合搜查被执行人住所").wait_for()
    [op] = await world.store.list_operations(court_ids=None, statuses=None)
    assert op.court_id == "HLJ01" and op.unit_ids == ("HLJ0102-U01", "HLJ0103-U01")  # the centre's own court
    op_id = op.id
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
