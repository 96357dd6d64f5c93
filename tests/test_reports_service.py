"""Map reports as a service that must not hurt the rest of the server: rendered off the event loop (a
request arriving meanwhile is answered while the report renders), a bounded number at once (one more is
told to come back, with Retry-After), a day of fixes shown whole or marked simplified but never cut short
(in the report and on the track route), and a case report, which shows query results, is audited."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from command_center.keys import REPORTS
from core.ids import UnitId
from maps import tracks
from maps.report import _time
from maps.report_pool import ReportPool, ReportsBusy
from maps.tracks import MAX_SHOWN_POINTS
from persistence.models import Position
from query_control.audit import verify
from tests.conftest import World
from tests.query_support import open_case, query_app, running_fleet, submit, test_agencies, wait_complete

UNIT = UnitId("HLJ0102-U01")
DAY_MS = 24 * 3_600_000
FIXES = 86_400  # a day at 1 Hz


async def _a_day_of_fixes(world: World) -> tuple[int, int]:
    """A unit walking a wavy path for a whole day at 1 Hz, stored as its writer would have stored it;
    returns the period [since, until) that covers it. Douglas–Peucker at 5 m cannot bring it under the cap."""
    since = int(time.time() * 1000) - DAY_MS - 60_000
    batch: list[Position] = []
    for i in range(FIXES):
        lat = 45.70 + i * 0.000002 + 0.0003 * math.sin(i / 3)  # a zigzag of ~30 m every few fixes
        lon = 126.55 + i * 0.000003
        batch.append(Position(UNIT, i + 1, since + i * 1000, lat, lon, 5.0, 1.2, 90.0, None, 80.0, False,
                              since + i * 1000))  # fmt: skip
        if len(batch) == 5_000:
            await world.store.insert_positions(batch)
            batch = []
    await world.store.insert_positions(batch)
    return since, since + DAY_MS


async def test_a_day_long_track_is_never_cut_short(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    since, until = await _a_day_of_fixes(world)
    last_fix = since + (FIXES - 1) * 1000
    period = f"since_ms={since}&until_ms={until}"

    track = await world.client.get(f"/api/units/{UNIT}/track?{period}", headers=world.auth("operator"))
    assert track.status == 200
    body = await track.json()
    assert body["raw_points"] == FIXES  # the store's page limit did not hide the rest of the day
    assert 2 <= len(body["points"]) <= MAX_SHOWN_POINTS and body["simplified_m"] > 0
    assert body["points"][0]["seq"] == 1 and body["points"][-1]["seq"] == FIXES
    assert body["points"][-1]["fix_time_ms"] == last_fix

    report = await world.client.get(f"/api/reports/units?unit_ids={UNIT}&{period}", headers=world.auth("operator"))
    assert report.status == 200, await report.text()
    marked = report.headers["X-Tracks-Simplified"]
    assert marked.startswith(f"{UNIT};stored={FIXES};shown=")
    shown = int(marked.split("shown=")[1].split(";")[0])
    assert 2 <= shown <= MAX_SHOWN_POINTS
    document = await report.text()
    assert f"共 {FIXES} 个定位点，图上显示 {shown} 个" in document  # the report itself says so
    assert f"终点 {_time(last_fix)}" in document  # and ends where the day ended

    monkeypatch.setattr(tracks, "MAX_READ_POSITIONS", 50_000)  # a period holding more than one read may
    for path in (f"/api/units/{UNIT}/track?{period}", f"/api/reports/units?unit_ids={UNIT}&{period}"):
        refused = await world.client.get(path, headers=world.auth("operator"))
        assert refused.status == 422
        message = (await refused.json())["error"]["message"]
        assert message == f"unit {UNIT} has more than 50000 positions from {since} to {until}; ask for a shorter period"


async def test_a_short_track_is_shown_whole(world: World) -> None:
    since = int(time.time() * 1000) - 600_000
    fixes = [Position(UNIT, i, since + i * 1000, 45.75 + i * 0.0001, 126.6, None, None, None, None, None, False,
                      since) for i in range(1, 101)]  # fmt: skip
    await world.store.insert_positions(fixes)
    period = f"since_ms={since}&until_ms={since + 200_000}"
    body = await (await world.client.get(f"/api/units/{UNIT}/track?{period}", headers=world.auth("operator"))).json()
    assert body["raw_points"] == len(body["points"]) == 100 and body["simplified_m"] == 0
    report = await world.client.get(f"/api/reports/units?unit_ids={UNIT}&{period}", headers=world.auth("operator"))
    assert report.status == 200 and "X-Tracks-Simplified" not in report.headers
    assert "轨迹已简化" not in await report.text()


async def test_the_server_answers_while_a_report_renders(world: World) -> None:
    """An event-loop probe: it watches for the moment the report's work is in a worker and, right then,
    asks for /api/health. On the loop, the render would run between two of the probe's turns, so the probe
    would never see it running and nothing could be answered until it finished."""
    since, until = await _a_day_of_fixes(world)
    pool = world.client.app[REPORTS]
    url = f"/api/reports/units?unit_ids={UNIT}&since_ms={since}&until_ms={until}"
    report = asyncio.create_task(world.client.get(url, headers=world.auth("operator")))
    seen_rendering = False
    answered_meanwhile = False
    while not report.done():
        if pool.running:
            seen_rendering = True
            health = await world.client.get("/api/health")
            answered_meanwhile = health.status == 200 and not report.done()
            break
        await asyncio.sleep(0.002)
    response = await report
    assert response.status == 200
    assert seen_rendering, "the report's work never left the event loop"
    assert answered_meanwhile, "health was not answered before the report finished"


async def test_reports_beyond_the_limit_are_told_to_come_back(world: World) -> None:
    pool = world.client.app[REPORTS]
    since = int(time.time() * 1000) - 600_000
    url = f"/api/reports/units?unit_ids={UNIT}&since_ms={since}&until_ms={since + 60_000}"
    async with pool.slot(), pool.slot():  # the default two workers are busy
        busy = await world.client.get(url, headers=world.auth("operator"))
        assert busy.status == 503 and int(busy.headers["Retry-After"]) > 0
        error = (await busy.json())["error"]
        assert error["code"] == "unavailable" and "try again" in error["message"]
    assert (await world.client.get(url, headers=world.auth("operator"))).status == 200


async def test_a_case_report_is_an_audited_read_of_query_results(tmp_path: Path) -> None:
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        query = await submit(world, case["id"])
        await wait_complete(world, query["id"])
        before = len(await world.store.audit_entries())
        response = await world.client.get(f"/api/reports/cases/{case['id']}", headers=world.auth("judge"))
        assert response.status == 200
        entries = (await world.store.audit_entries())[before:]
        assert [e.action for e in entries] == ["case.report"]
        judge = await world.store.find_user("judge")
        assert judge is not None and entries[0].actor_id == judge.id and entries[0].case_id == case["id"]
        assert entries[0].details["queries"] == 1 and entries[0].details["assets"] > 0
        refused = await world.client.get(f"/api/reports/cases/{case['id']}", headers=world.auth("judge2"))
        assert refused.status == 403  # not a judge of this case: refused, and nothing read to audit
        assert len(await world.store.audit_entries()) == before + 1
        assert (await verify(world.store)).ok


async def test_work_whose_request_went_away_still_counts_until_its_worker_is_done() -> None:
    """A process cannot be stopped mid-render: while it finishes the work of a request that was cancelled, that
    worker is not free, so a client retrying at once cannot pile up renders behind it."""
    pool = ReportPool(1)
    try:
        async with pool.slot():
            abandoned = asyncio.create_task(pool.run(time.sleep, 2.0))
            await asyncio.sleep(0)  # the work is handed to the pool
            assert pool.running == 1
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
        assert pool.busy == 0 and pool.running == 1
        with pytest.raises(ReportsBusy):
            async with pool.slot():
                pass
        async with asyncio.timeout(30):
            while True:  # the worker finishes the abandoned work, then is free again
                if not pool.running:
                    break
                await asyncio.sleep(0.05)
        async with pool.slot():
            assert await pool.run(sum, [1, 2, 3]) == 6
    finally:
        await pool.close()
