"""The 运维 page: ``GET /api/ops/overview`` for administrators and the top court's supervisors, and the page in headless
Chromium showing this process, its dependencies, units, screens, agencies and the disk warning in Chinese."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser

from cluster.processes import ProcessRecord, RedisProcesses
from command_center.keys import AUDIT
from config.settings import BusSettings, ObservabilitySettings, StoreSettings
from media.evidence import SEGMENT_ACTION
from persistence.models import Role
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World
from tests.test_wall_display_browser import browser, chromium  # noqa: F401 (fixtures)

SCREENSHOT = Path("/tmp/ops-page.png")


async def test_the_overview_reports_this_process_and_warns_on_a_full_disk(make_world: AppFactory) -> None:
    # Every disk has less than 100 % free: the warning must show; at 0 % it never does.
    world = await make_world(observability=ObservabilitySettings(disk_warning_percent=100))
    now_ms = int(time.time() * 1000)
    fix = {"seq": 1, "fix_time_ms": now_ms, "lat": 45.75, "lon": 126.64}
    assert (await world.client.post("/api/telemetry/batch", json={"positions": [fix]},
                                    headers=world.auth("device"))).status == 200  # fmt: skip
    response = await world.client.get("/api/ops/overview", headers=world.auth("admin"))
    assert response.status == 200, await response.text()
    overview = await response.json()
    assert overview["node"]["leader"] is True and overview["node"]["shared"] is False
    assert overview["node"]["leader_node"] == overview["node"]["id"]
    assert overview["store_up"] is True and overview["bus_up"] is True
    assert overview["units"]["available"] == 1 and overview["positions"]["stored"] == 1
    assert overview["media"]["sessions"] == {"unit": 0, "viewer": 0, "talkback": 0, "participant": 0}
    assert len(overview["agencies"]) == 18 and {a["breaker"] for a in overview["agencies"]} == {"closed"}
    disk = overview["disk"]
    assert disk["size_bytes"] > 0 and 0 <= disk["free_percent"] < 100
    assert disk["warning"] is True and disk["warn_below_percent"] == 100
    # the supervisor here is of an intermediate court: process-wide figures are not theirs to read
    for role in ("operator", "judge", "device", "supervisor"):
        assert (await world.client.get("/api/ops/overview", headers=world.auth(role))).status == 403, role
    # and the pages know it beforehand (GET /api/me), so the nav offers 运维 only to those who may read it
    await world.add_user("high", Role.SUPERVISOR, "HLJ")  # the province's high court: it oversees every court
    world.tokens["high"] = await world.login("high")
    assert (await world.client.get("/api/ops/overview", headers=world.auth("high"))).status == 200
    for role, every in (("admin", True), ("high", True), ("supervisor", False), ("operator", False), ("judge", False)):
        me = await (await world.client.get("/api/me", headers=world.auth(role))).json()
        assert me["oversees_every_court"] is every, role


async def test_on_the_embedded_default_the_cluster_is_this_one_process(make_world: AppFactory) -> None:
    world = await make_world()
    overview = await (await world.client.get("/api/ops/overview", headers=world.auth("admin"))).json()
    [process] = overview["processes"]
    assert process["id"] == overview["node"]["id"] and process["pid"] == os.getpid()
    assert process["state"] == "live" and process["leader"] is True and process["roles"]["leader"] == 1
    assert process["media"] == overview["media"]["sessions"] and set(process["media"].values()) == {0}
    assert process["screens"] == 0 and process["units"] == 0
    assert process["started"] == overview["node"]["started"] and process["age_seconds"] < 10


async def test_no_disk_warning_above_the_threshold(make_world: AppFactory) -> None:
    world = await make_world(observability=ObservabilitySettings(disk_warning_percent=0))
    overview = await (await world.client.get("/api/ops/overview", headers=world.auth("admin"))).json()
    assert overview["disk"]["warning"] is False


async def test_the_ops_page_shows_the_overview_in_chinese(
    make_world: AppFactory,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    world: World = await make_world(observability=ObservabilitySettings(disk_warning_percent=100))
    world_dir = tmp_path  # the app's data dir (make_world)
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(f"{base}/")
        await page.fill("input[name=username]", "operator")
        await page.fill("input[name=password]", world.passwords["operator"])
        await page.click("button[type=submit]")
        await page.wait_for_selector("#console-link", state="visible")
        assert await page.locator("#ops-link").is_hidden()  # operators have no 运维 page
        await page.evaluate("sessionStorage.clear()")
        await page.reload()
        await page.fill("input[name=username]", "supervisor")  # an intermediate court's: it would get 403
        await page.fill("input[name=password]", world.passwords["supervisor"])
        await page.click("button[type=submit]")
        await page.wait_for_selector("#console-link", state="visible")
        assert await page.locator("#ops-link").count() == 0
        await page.goto(f"{base}/ops")  # opened by its address: told why, not shown a 403
        await page.wait_for_selector("#refused", state="visible")
        refused = await page.text_content("#refused")
        assert refused == "此页面显示本系统所有法院的数据，仅供管理员和统管全部法院的主管使用", refused
        assert await page.locator("#nav a[data-page='ops']").count() == 0
        await page.goto(f"{base}/")
        await page.evaluate("sessionStorage.clear()")
        await page.reload()
        await page.fill("input[name=username]", "admin")  # the overview is for those who oversee every court
        await page.fill("input[name=password]", world.passwords["admin"])
        await page.click("button[type=submit]")
        await page.click("#ops-link")
        await page.wait_for_function("() => window.opsState?.overview !== null && window.opsState?.overview")
        assert await page.text_content("h1") == "执行指挥中心 · 运维"
        assert await page.text_content("#role") == "单进程"
        assert await page.text_content("#leader-node") == await page.text_content("#node")
        assert await page.text_content("#store") == "正常" and await page.text_content("#bus") == "正常"
        assert await page.locator("#agencies tbody tr").count() == 18
        process = page.locator("#processes tbody tr")
        assert await process.count() == 1 and await process.get_attribute("data-leader") == "true"
        assert "主节点" in (await process.text_content() or "") and "在线" in (await process.text_content() or "")
        assert await page.locator("#verification-warning").is_hidden()
        # A recorded segment the chain vouches for is altered on disk: 立即校验 says so.
        folder = world_dir / "recordings" / "HLJ0102-U01" / "s1"
        folder.mkdir(parents=True)
        (folder / "00001.mkv").write_bytes(b"evidence")
        await world.client.app[AUDIT].record(SEGMENT_ACTION, None, details={
            "file": "HLJ0102-U01/s1/00001.mkv", "unit_id": "HLJ0102-U01", "session_id": "s1", "bytes": 8,
            "sha256": hashlib.sha256(b"evidence").hexdigest()})  # fmt: skip
        (folder / "00001.mkv").write_bytes(b"evidencE")
        await page.click("#verify")
        await page.wait_for_selector("#verification-warning", state="visible")
        assert "HLJ0102-U01/s1/00001.mkv" in (await page.text_content("#verification-problems") or "")
        warning = page.locator("#disk-warning")
        assert await warning.is_visible() and "录像磁盘可用空间低于 100%" in (await warning.text_content() or "")
        await page.screenshot(path=str(SCREENSHOT))
        await page.click("#lang")
        assert await page.text_content("#store") == "up"
        assert problems == []
    finally:
        await context.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_on_postgres_and_redis_the_overview_names_the_leader(
    make_world: AppFactory, pg_schema: str, redis_namespace: str
) -> None:
    world = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=pg_schema,
                             bus=BusSettings(url=REDIS_URL, namespace=redis_namespace))  # fmt: skip
    deadline = time.monotonic() + 10
    while True:  # leadership is taken in the background within a lease period
        overview = await (await world.client.get("/api/ops/overview", headers=world.auth("admin"))).json()
        if overview["node"]["leader"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert overview["node"]["shared"] is True and overview["node"]["leader"] is True
    assert overview["node"]["leader_node"] == overview["node"]["id"]
    assert overview["store_up"] is True and overview["bus_up"] is True


@pytest.mark.postgres
@pytest.mark.redis
async def test_the_page_marks_a_process_that_stopped_beating_as_stale(
    make_world: AppFactory,
    browser: Browser,  # noqa: F811
    pg_schema: str,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process's record (as it wrote it before it was killed) goes stale after the TTL: 失联, in red."""
    monkeypatch.setenv("CC_CLUSTER__HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("CC_CLUSTER__PROCESS_TTL_SECONDS", "1")
    world = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=pg_schema,
                             bus=BusSettings(url=REDIS_URL, namespace=redis_namespace))  # fmt: skip
    gone = RedisProcesses(REDIS_URL, namespace=redis_namespace, ttl_seconds=1)
    try:
        await gone.beat(ProcessRecord(id="node-gone", host="app2", pid=4242, started=time.time() - 60,
                                      url="http://10.0.0.2:8102", roles={"query": 2}, units=7))  # fmt: skip
    finally:
        await gone.close()
    await asyncio.sleep(1.2)  # the TTL passes without another heartbeat from it
    base = str(world.client.make_url("")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    try:
        await page.goto(f"{base}/")
        await page.fill("input[name=username]", "admin")
        await page.fill("input[name=password]", world.passwords["admin"])
        await page.click("button[type=submit]")
        await page.click("#ops-link")
        await page.wait_for_selector("#processes tbody tr[data-node='node-gone']")
        stale = page.locator("#processes tbody tr[data-node='node-gone']")
        assert await stale.get_attribute("data-state") == "stale"
        text = await stale.text_content() or ""
        assert "失联" in text and "app2 / 4242" in text and "查控任务 ×2" in text
        assert await stale.locator("td.bad").count() == 1
        await page.wait_for_selector("#processes tbody tr[data-leader='true'][data-state='live']")  # this one
        assert await page.locator("#processes tbody tr").count() == 2
    finally:
        await context.close()
