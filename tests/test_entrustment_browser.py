"""Entrustment (执行委托) in headless Chromium, two courts' centres side by side: Daoli (Harbin) asks Aihui
(Heihe) to seize a car; Aihui accepts, assigns its unit and reports; Daoli's page follows the timeline and the
unit's position while the task runs, and no longer sees the unit once it is completed. Nothing polls: each page
hears every step on the screen socket, and the unit's positions arrive as frames."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page

from command_center.credentials import lookup_hash, new_device_secret
from core.ids import CourtId, UnitId
from persistence.models import Role, UnitKind
from tests.conftest import World
from tests.test_live_tracking import fix
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

UNIT = "HLJ1102-U01"
SCREENSHOT = Path("/tmp/entrustments.png")


async def _centre(world: World, browser: Browser, username: str, problems: list[str]) -> Page:  # noqa: F811
    """A court centre's page: log in on the start page, then open the entrustment page from the console."""
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1500, "height": 1000}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{username}: {error}"))
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", world.passwords[username])
    await page.click("button[type=submit]")
    await page.click("#console-link")
    await page.click("#nav a[data-page=entrust]")  # the console's navigation
    await page.wait_for_url(f"{base}/entrustments")
    await page.wait_for_function("() => window.entrustState?.refreshes >= 1")
    return page


async def test_two_courts_run_an_entrustment_in_their_consoles(world: World, browser: Browser) -> None:  # noqa: F811
    await world.add_user("daoli", Role.OPERATOR, "HLJ0102")
    await world.add_user("aihui", Role.OPERATOR, "HLJ1102")
    secret = new_device_secret()
    await world.store.add_unit(unit_id=UnitId(UNIT), name="爱辉一号", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ1102"), secret_hash=lookup_hash(secret))  # fmt: skip
    sent = await world.client.post("/api/telemetry/batch", json={"positions": [fix(1, lat=50.24488, lon=127.5289)]},
                                   headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert sent.status == 200
    problems: list[str] = []
    asking = await _centre(world, browser, "daoli", problems)
    receiving = await _centre(world, browser, "aihui", problems)

    assert await asking.text_content("h1") == "执行指挥中心 · 执行委托"  # Simplified Chinese by default
    await asking.select_option("#request-form select[name=to_court_id]", "HLJ1102")
    await asking.fill("#request-form input[name=task]", "查封被执行人名下车辆")
    await asking.fill("#request-form input[name=address]", "黑河市爱辉区中央街 12 号")
    await asking.fill("#request-form input[name=lat]", "50.2449")
    await asking.fill("#request-form input[name=lon]", "127.5289")
    await asking.fill("#request-form input[name=deadline]", "2030-01-01 18:00")  # 24-hour, any locale
    await asking.fill("#request-form input[name=reason]", "被执行人车辆停放于贵院辖区")
    await asking.click("#request-form button[type=submit]")
    await asking.wait_for_selector("#asked tr[data-entrustment] .status.requested")
    assert await asking.text_content("#message") == "委托已发出"
    deadline = "window.entrustState.entrustments[0].deadline_ms === new Date(2030, 0, 1, 18, 0).getTime()"
    assert await asking.evaluate(deadline)  # typed in the court's local time
    assert await asking.locator("#received tr[data-entrustment]").count() == 0

    await receiving.wait_for_function("() => window.entrustState.steps >= 1")  # the screen socket brings it
    row = receiving.locator("#received tr[data-entrustment]")
    await row.wait_for()
    assert "待受理" in (await row.text_content() or "")
    await row.locator("button.accept").click()
    await receiving.wait_for_selector("#received tr[data-entrustment] .status.accepted")
    await receiving.select_option("#received select[name=units]", UNIT)
    await receiving.locator("#received button.assign").click()
    await receiving.wait_for_function(f"() => window.entrustState.entrustments[0]?.unit_ids[0] === '{UNIT}'")
    await receiving.fill("#received input[name=reports]", "已到达现场，正在查封")
    # the assignment also said 已完成: clear it, so the wait below is for the report's own answer
    await receiving.evaluate("document.querySelector('#message').textContent = ''")
    await receiving.locator("#received button.reports").click()
    await receiving.wait_for_function("() => document.querySelector('#message').textContent === '已完成'")

    await asking.locator("#asked button.detail").click()
    unit_row = asking.locator(f"#positions tr[data-unit='{UNIT}']")
    await unit_row.wait_for()
    assert "50.24488" in (await unit_row.text_content() or "")
    assert await unit_row.locator(".status").text_content() == "待下发"  # its go-to task waits for the unit
    report = "进展 · 黑河市爱辉区人民法院 · 已到达现场，正在查封"
    await asking.wait_for_function(f"() => document.querySelector('#timeline').textContent.includes('{report}')")
    # the unit moves: its position arrives on the asking court's page as a frame on its socket
    await asking.wait_for_function("() => window.entrustState.following?.socket.connected")
    moved = await world.client.post("/api/telemetry/batch", json={"positions": [fix(2, lat=50.25011, lon=127.53)]},
                                    headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert moved.status == 200
    await asking.wait_for_function(f"() => document.querySelector(\"#positions tr[data-unit='{UNIT}']\")"
                                   ".textContent.includes('50.25011')")  # fmt: skip
    assert await asking.evaluate("window.entrustState.frames") >= 1  # it came as a frame
    await asking.screenshot(path=str(SCREENSHOT), full_page=True)

    await receiving.fill("#received input[name=complete]", "车辆已查封")
    await receiving.locator("#received button.complete").click()
    await receiving.wait_for_selector("#received tr[data-entrustment] .status.completed")
    await asking.wait_for_selector("#asked .status.completed")  # told on its socket, no click, no poll
    await asking.wait_for_function("() => document.querySelector('#positions').textContent.includes('不显示受托单元')")
    assert await asking.locator("#positions tr[data-unit]").count() == 0
    assert await asking.evaluate("window.entrustState.following") is None  # its units' socket is closed
    assert problems == []
