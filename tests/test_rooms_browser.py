"""Consultation rooms (执行会商) in headless Chromium, two centres side by side: Daoli's operator opens a room on
the court's case and invites the high court's duty supervisor; the supervisor joins from their own console,
the host mutes them, both pages follow, and the room closes on both."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page

from core.ids import CourtId
from persistence.models import Role
from tests.conftest import World
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

SCREENSHOT = Path("/tmp/rooms.png")


async def _centre(world: World, browser: Browser, username: str, problems: list[str]) -> Page:  # noqa: F811
    """A centre's page: log in on the start page, then open the consultation page from its link there."""
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{username}: {error}"))
    await page.goto(f"{base}/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", world.passwords[username])
    await page.click("button[type=submit]")
    await page.click("#rooms-link")
    await page.wait_for_url(f"{base}/rooms")
    await page.wait_for_function("() => window.roomsState?.refreshes >= 1")
    return page


async def _member_says(page: Page, username: str, words: str) -> None:
    await page.wait_for_function(
        "([who, words]) => document.querySelector(`#members tr[data-user='${who}']`)?.textContent.includes(words)",
        arg=[username, words],
    )


async def test_two_centres_confer_in_a_room_in_their_consoles(world: World, browser: Browser) -> None:  # noqa: F811
    await world.add_user("daoli", Role.OPERATOR, "HLJ0102")
    await world.add_user("high", Role.SUPERVISOR, "HLJ")
    case = await world.store.add_case(case_number="(2026)黑0102执88号", court_id=CourtId("HLJ0102"),
                                      title="张某拒不履行案", created_by=None, created_ms=0)  # fmt: skip
    problems: list[str] = []
    host = await _centre(world, browser, "daoli", problems)
    assert await host.text_content("h1") == "执行指挥中心 · 执行会商"  # Simplified Chinese by default

    await host.fill("#open-form input[name=title]", "张某案执行会商")
    await host.fill("#open-form input[name=case_id]", str(case.id))
    await host.select_option("#open-form select[name=unit_id]", "HLJ0102-U01")
    await host.click("#find")
    high = host.locator("#candidates label", has_text="high")
    assert "黑龙江省高级人民法院" in (await high.text_content() or "")  # the court's name, not its code
    await high.locator("input").check()
    await host.click("#open-form button[type=submit]")
    await host.wait_for_function("() => window.roomsState.room?.members.length === 2")
    assert await host.locator("#pinned").is_visible()  # the unit's live video has its place in the room
    await _member_says(host, "daoli", "在会")
    await _member_says(host, "high", "未入会")

    guest = await _centre(world, browser, "high", problems)
    await guest.wait_for_selector("#rooms tr[data-room] button.show")
    await guest.click("#rooms tr[data-room] button.show")
    await guest.wait_for_selector("#join", state="visible")
    assert await guest.locator("#close").is_hidden()  # only the host closes
    await guest.click("#join")
    await _member_says(guest, "high", "在会")

    await _member_says(host, "high", "在会")  # the host's page follows
    await host.click("#members tr[data-user='high'] button.mute")
    await _member_says(host, "high", "已静音")
    await _member_says(guest, "high", "已静音")
    await host.screenshot(path=str(SCREENSHOT))

    await host.click("#close")
    await guest.wait_for_function("() => document.getElementById('room-title').textContent.includes('已结束')")
    assert await guest.locator("#leave").is_hidden() and await guest.locator("#join").is_hidden()
    await host.click("#lang")
    await host.wait_for_function("() => document.querySelector('h1').textContent === 'Command Centre · Consultation'")
    actions = [a.action for a in await world.store.audit_entries() if a.action.startswith("room.")]
    assert actions == ["room.opened", "room.joined", "room.muted", "room.closed"]
    assert problems == []
