"""执行委托 on the walls, in headless Chromium: the asking and the receiving courts' walls list an entrustment
as soon as it is asked, follow its steps, and show 执行委托超期 (in the entrustment list and as an alarm) when
the leader's sweep finds it past its deadline; it leaves both walls when it ends. The receiving centre's
console hears each step too and brings its duty log up to date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser

from config.settings import EntrustmentSettings
from persistence.models import Role
from tests.conftest import AppFactory
from tests.test_cross_court import REQUEST
from tests.test_cross_court_wall_browser import _open
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)


async def test_both_courts_walls_follow_an_entrustment_and_its_overdue_alarm(
    make_world: AppFactory,
    browser: Browser,  # noqa: F811
) -> None:
    world = await make_world(entrustments=EntrustmentSettings(overdue_sweep_seconds=0.1))
    for name, court in (("daoli", "HLJ0102"), ("aihui", "HLJ1102")):
        await world.add_user(name, Role.OPERATOR, court)
        world.tokens[name] = await world.login(name)
    problems: list[str] = []
    asking = await _open(world, browser, "daoli", problems)
    receiving = await _open(world, browser, "aihui", problems)
    console = await _open(world, browser, "aihui", problems, "console")  # the receiving centre's console
    for wall in (asking, receiving):
        assert await wall.text_content("#entrustments") == "暂无执行委托"

    deadline = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    made = await world.client.post("/api/entrustments", json=REQUEST | {"deadline": deadline},
                                   headers=world.auth("daoli"))  # fmt: skip
    assert made.status == 201, await made.text()
    e_id = (await made.json())["entrustment"]["id"]
    row = f"#entrustments li[data-entrustment-id='{e_id}']"
    for wall in (asking, receiving):
        await wall.locator(row).wait_for()
        assert "查封被执行人名下车辆 · 待受理" in (await wall.text_content(row) or "")
    # the console hears the step on its socket and shows its duty-log note without waiting for its next poll
    await console.wait_for_function("() => window.consoleState.entrustmentSteps >= 1")
    await console.locator("#log li", has_text="执行委托「查封被执行人名下车辆」").wait_for()
    accepted = await world.client.post(f"/api/entrustments/{e_id}/accept", json={}, headers=world.auth("aihui"))
    assert accepted.status == 200
    for wall in (asking, receiving):
        await wall.locator(f"{row}.overdue", has_text="执行中").wait_for(
            timeout=15_000
        )  # accepted; the deadline passes
        assert "执行委托超期" in (await wall.text_content(row) or "")
        await wall.locator("#alarms li", has_text="执行委托超期").wait_for()
    # the console's duty log has the sweep's step too, as the system's note
    overdue_note = console.locator("#log li", has_text="已超期：已超过委托期限，尚未办结")
    await overdue_note.wait_for(timeout=15_000)
    assert "记录（系统） · 执行委托「查封被执行人名下车辆」" in (await overdue_note.text_content() or "")
    done = await world.client.post(f"/api/entrustments/{e_id}/complete", json={"reason": "已办结"},
                                   headers=world.auth("aihui"))  # fmt: skip
    assert done.status == 200
    for wall in (asking, receiving):
        await wall.locator(row).wait_for(state="detached")
    assert problems == []
