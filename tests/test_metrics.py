"""``/metrics``: only for an administrator or the configured scrape token, and the series move with what
happens (positions stored and refused, logins refused, screens connected, the loop's lag)."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from config.settings import ObservabilitySettings
from tests.conftest import AppFactory, World

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
