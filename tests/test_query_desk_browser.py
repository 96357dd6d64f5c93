"""The judge's query desk in a real browser (Debian's Chromium via Playwright) against the real server and the
real agency simulators: log in, pick the case, submit, and watch every agency's answer arrive live with the
countdown, the assets grouped by kind, the properties and vehicles on the small map, and a freeze request
waiting for its second approval. Nothing may leave the machine."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from playwright.async_api import Browser

from query_control.agencies import load_agencies
from simulators.agencies.data import holdings
from tests.query_support import ORG, PERSON, open_case, query_app, running_fleet, test_agencies
from tests.test_screens_browser import latin_words
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

SCREENSHOT = Path("/tmp/desk.png")


def located_assets() -> int:
    """How many assets the simulators' deterministic data gives a location, for the case's two parties."""
    return sum("location" in record for a in load_agencies() for who in (PERSON, ORG)
               if who is PERSON or "organisation" in a.party_kinds for record in holdings(a, who[1]))  # fmt: skip


async def test_a_judge_queries_and_watches_the_answers_arrive(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    agencies = test_agencies({"ccb": {"latency_median_ms": 1500, "latency_sigma": 0.01}})  # one slow bank
    async with running_fleet(agencies) as (_, pointed), query_app(tmp_path, pointed, deadline=10) as world:
        case = await open_case(world)
        context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
        context.set_default_timeout(15_000)
        page = await context.new_page()
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        base = str(world.client.make_url("")).rstrip("/")
        try:
            await page.goto(f"{base}/")
            await page.fill("input[name=username]", "judge")
            await page.fill("input[name=password]", world.passwords["judge"])
            await page.click("button[type=submit]")
            await page.click("#desk-link")
            await page.wait_for_url(f"{base}/desk")
            await page.wait_for_function(f"() => document.querySelector('#case').value === '{case['id']}'")
            assert await page.locator("#parties input:checked").count() == 2
            assert await page.locator("#agencies input").count() == 18

            await page.click("#submit")  # no reason yet: refused on the page, nothing sent
            assert "查询事由" in (await page.text_content("#ask-error") or "")
            await page.fill("#reason", "申请执行人申请查控被执行人财产")
            await page.click("#submit")
            await page.wait_for_function("() => window.deskState && window.deskState.query !== null")
            assert "剩余" in (await page.text_content("#countdown") or "")
            jobs: int = await page.evaluate("window.deskState.jobs.size")
            assert jobs == sum(1 for a in agencies for p in ("person", "organisation")
                               if p in a.party_kinds)  # fmt: skip
            await page.wait_for_selector(".job.pending[data-agency=ccb]")  # the slow bank is still asking
            await page.wait_for_selector(".job.answered, .job.no_assets")  # ... while others have answered
            await page.wait_for_function("() => window.deskState?.query?.complete", timeout=20_000)
            assert "已完成" in (await page.text_content("#countdown") or "")
            statuses: list[str] = await page.evaluate("[...window.deskState.jobs.values()].map(j => j.status)")
            assert set(statuses) <= {"answered", "no_assets"}, statuses
            assert await page.locator(".job.pending").count() == 0
            assert "已反馈 " in (await page.text_content("#progress") or "")
            assert "¥" in (await page.text_content("#assets") or "")
            assert "不动产" in (await page.text_content("#assets") or "")
            expected = located_assets()
            assert expected > 0 and await page.evaluate("window.deskState.markers()") == expected
            await page.wait_for_timeout(400)  # the framing's animation
            assert await page.evaluate("window.deskState.markersInView()")  # framed on the assets, none cut off

            # a freeze on a deposit: sent for the second approval, and the page shows it waiting
            deposit_row = page.locator("#assets tr", has=page.locator("button[data-action=freeze]")).first
            await deposit_row.locator("button[data-action=freeze]").click()
            await deposit_row.locator(".followup.awaiting_approval").wait_for()
            assert "冻结·待审批" in (await deposit_row.text_content() or "")
            [followup] = (await (await world.client.get("/api/followups", headers=world.auth("judge"))).json())[
                "followups"
            ]
            assert followup["action"] == "freeze" and followup["status"] == "awaiting_approval"
            # the supervisor approves elsewhere: the agency's confirmation reaches the page on the query's socket
            approved = await world.client.post(f"/api/followups/{followup['id']}/approve", json={"note": "同意"},
                                               headers=world.auth("supervisor"))  # fmt: skip
            assert approved.status == 200, await approved.text()
            await page.locator("#assets .followup.confirmed").first.wait_for()
            assert (
                await latin_words(page, {"judge"}) == []
            )  # the judge's name is data; asset kinds, statuses and follow-ups all in Chinese
            await page.screenshot(path=str(SCREENSHOT))

            # the case's map report (folium, offline) puts the located assets on the map
            report = await world.client.get(f"/api/reports/cases/{case['id']}", headers=world.auth("judge"))
            assert report.status == 200 and "哈尔滨市道里区某街" in await report.text()
            other = await world.client.get(f"/api/reports/cases/{case['id']}", headers=world.auth("judge2"))
            assert other.status == 403

            await page.click("#lang")
            assert "complete in" in (await page.text_content("#countdown") or "")
            outside = [u for u in requests if urlparse(u).hostname not in ("127.0.0.1", "localhost")]
            assert outside == [], outside
            assert problems == [], problems
        finally:
            await context.close()
