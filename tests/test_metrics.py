"""``/metrics``: only for an administrator or the configured scrape token, and the series move with what
happens (positions stored and refused, logins refused, screens connected, the loop's lag)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from command_center.metrics import LoopHistogram
from config.settings import ObservabilitySettings
from tests.conftest import AppFactory, World
from tests.media_support import UNIT, UnitPeer, ViewerPeer, loopback
from tests.query_support import open_case, query_app, running_fleet, submit, test_agencies, wait_complete

__all__ = ["loopback"]  # a fixture

SCRAPE_TOKEN = "scrape-" + "x" * 40


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _scrape(world: World, headers: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await world.client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return _samples(await response.text())


@pytest.fixture
async def scraped_world(make_world: AppFactory) -> World:
    return await make_world(observability=ObservabilitySettings(metrics_token=SecretStr(SCRAPE_TOKEN)))


async def test_metrics_answer_the_scrape_token_and_admins_only(scraped_world: World) -> None:
    world = scraped_world
    scraper = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    assert ("cc_screens_connected", ()) in await _scrape(world, scraper)
    assert ("cc_screens_connected", ()) in await _scrape(world, world.auth("admin"))
    for label, headers in (
        ("none", {}),
        ("wrong token", {"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}y"}),
        ("token prefix", {"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}"}),
    ):
        response = await world.client.get("/metrics", headers=headers)
        assert response.status == 401, label
        assert SCRAPE_TOKEN not in await response.text()
    for role in ("operator", "supervisor", "judge", "device"):
        assert (await world.client.get("/metrics", headers=world.auth(role))).status == 403, role
    # The scrape token opens /metrics and nothing else.
    for path in ("/api/units", "/api/ops/overview", "/api/health/details", "/api/me"):
        response = await world.client.get(path, headers=scraper)
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "forbidden"


async def test_without_a_configured_token_no_bearer_is_a_scrape_token(world: World) -> None:
    response = await world.client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert response.status == 401


def test_a_weak_or_ambiguous_scrape_token_is_refused_at_start() -> None:
    for bad in ("short", "cc_s_" + "x" * 40):
        with pytest.raises(ValidationError, match="metrics_token"):
            ObservabilitySettings(metrics_token=SecretStr(bad))


async def test_positions_logins_and_screens_move_their_series(world: World) -> None:
    admin = world.auth("admin")
    before = await _scrape(world, admin)
    now_ms = int(time.time() * 1000)
    good = {"seq": 1, "fix_time_ms": now_ms, "lat": 45.75, "lon": 126.64}
    bad = {"seq": 2, "fix_time_ms": now_ms, "lat": 95.0, "lon": 126.64}
    device = world.auth("device")
    response = await world.client.post("/api/telemetry/batch", json={"positions": [good, bad]}, headers=device)
    assert response.status == 200, await response.text()
    response = await world.client.post("/api/telemetry/batch", json={"positions": [good]}, headers=device)
    assert (await response.json())["duplicates"] == [1]
    wrong = await world.client.post("/api/auth/login", json={"username": "operator", "password": "not it at all"})
    assert wrong.status == 401
    ticket = await world.ticket("operator")
    async with world.client.ws_connect(f"/api/screen/ws?ticket={ticket}") as screen:
        await screen.send_json({"type": "subscribe", "topics": ["units"]})
        await screen.receive_json(timeout=5)
        during = await _scrape(world, admin)
    after = await _scrape(world, admin)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert moved("cc_positions_total", outcome="stored") == 1
    assert moved("cc_positions_total", outcome="invalid") == 1
    assert moved("cc_positions_total", outcome="duplicate") == 1
    assert moved("cc_telemetry_ack_seconds_count") == 2
    assert moved("cc_login_failures_total", reason="wrong_credentials") == 1
    assert after[("cc_units", (("status", "available"),))] >= 1  # the unit that reported
    assert during[("cc_screens_connected", ())] == 1
    assert after[("cc_store_up", ())] == 1 and after[("cc_bus_up", ())] == 1
    assert after[("cc_leader", ())] == 1
    assert after[("cc_positions_pending", ())] == 0
    assert ("cc_media_sessions", (("role", "viewer"),)) in after
    breakers = {dict(labels)["agency"]: value for (name, labels), value in after.items()
                if name == "cc_agency_breaker_state" and dict(labels)["state"] == "closed"}  # fmt: skip
    assert len(breakers) == 18 and set(breakers.values()) == {1.0}  # the default agencies, none failing
    assert after[("cc_event_loop_lag_seconds_count", ())] >= 0
    assert not [name for name, labels in after if any(k in ("unit_id", "unit", "user", "query") for k, _ in labels)]


async def test_the_loop_lag_series_counts_samples(make_world: AppFactory) -> None:
    world = await make_world(observability=ObservabilitySettings(loop_lag_interval_seconds=0.05))
    await asyncio.sleep(0.3)
    after = await _scrape(world, world.auth("admin"))
    assert after[("cc_event_loop_lag_seconds_count", ())] >= 2


@pytest.mark.usefixtures("loopback")
async def test_a_streaming_unit_and_its_viewer_move_the_media_series(world: World) -> None:
    """Real peers (aiortc): a unit streams, an operator watches; sessions by role, frames received and
    forwarded, and the recording's bytes and sealed segment once an operator stops it."""
    admin = world.auth("admin")
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish()
    viewer = ViewerPeer(world)
    await viewer.watch()
    await viewer.frames("video", 10)
    during = await _scrape(world, admin)
    assert during[("cc_media_sessions", (("role", "unit"),))] == 1
    assert during[("cc_media_sessions", (("role", "viewer"),))] == 1
    assert during[("cc_media_frames_received_total", ())] >= 10
    assert during[("cc_media_frames_forwarded_total", ())] >= 10
    stopped = await world.client.delete(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
    assert stopped.status == 200, await stopped.text()
    await viewer.close()
    await unit.close()

    async def sealed() -> bool:
        after = await _scrape(world, admin)
        return after[("cc_recording_segments_sealed_total", ())] >= 1 and after[("cc_recording_bytes_total", ())] > 0

    deadline = time.monotonic() + 15
    while not await sealed():  # the session's last segment is finished and audited as it closes
        assert time.monotonic() < deadline, "no recording segment was sealed"
        await asyncio.sleep(0.2)


async def test_an_asset_query_moves_the_job_and_feedback_series(tmp_path: Path) -> None:
    """Real agency simulators: one down, the rest answer; the jobs by agency and status and the feedback time."""
    agencies = test_agencies({"icbc": {"outage": True}}, retries=0)
    async with running_fleet(agencies) as (_, pointed), query_app(tmp_path, pointed, deadline=3.0) as world:
        case = await open_case(world)
        query = await submit(world, case["id"])
        final = await wait_complete(world, query["id"])
        scraped = await _scrape(world, world.auth("admin"))
    jobs = {dict(labels)["agency"] + "/" + dict(labels)["status"]: value
            for (name, labels), value in scraped.items() if name == "cc_query_jobs_total"}  # fmt: skip
    assert sum(jobs.values()) == len(final["jobs"]) == 34
    assert jobs["icbc/failed"] == 2  # both parties, at the agency that is down
    assert scraped[("cc_query_feedback_seconds_count", ())] == 1
    assert scraped[("cc_query_feedback_seconds_sum", ())] <= 3.5
    breakers = {dict(labels)["agency"]: dict(labels)["state"] for (name, labels), value in scraped.items()
                if name == "cc_agency_breaker_state" and value == 1}  # fmt: skip
    assert breakers["icbc"] in ("closed", "open") and breakers["boc"] == "closed"


def test_the_loop_histogram_renders_as_prometheus_clients_own() -> None:
    """Same buckets (``le`` inclusive, cumulative, +Inf), count and sum as ``prometheus_client.Histogram`` for
    values on, between, below and beyond the bounds."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LoopHistogram("cc_test_seconds", "test", (0.1, 0.5, 1.0), ours)
    reference = Histogram("cc_test_seconds", "test", buckets=(0.1, 0.5, 1.0), registry=theirs)
    for value in (0.0, 0.05, 0.1, 0.10001, 0.5, 0.7, 1.0, 3.0, 1e9):
        fast.observe(value)
        reference.observe(value)
    rendered = _samples(generate_latest(ours).decode())
    expected = _samples(generate_latest(theirs).decode())
    assert rendered == {k: v for k, v in expected.items() if not k[0].endswith("_created")}
