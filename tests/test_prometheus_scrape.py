"""A real Prometheus (Debian's ``prometheus``) scrapes the running app with the scrape token and holds the
series the dashboard draws; the same Prometheus without the token is refused (the target is down, 401)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from config.settings import ObservabilitySettings
from tests.conftest import AppFactory, World

PROMETHEUS = shutil.which("prometheus")
SCRAPE_TOKEN = "prometheus-test-" + "k" * 32

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus (scripts/setup.sh --dev)")

#: Series a scrape must carry (the dashboard's panels are built on them).
EXPECTED = [
    'cc_units{status="available"}',
    'cc_positions_total{outcome="stored"}',
    "cc_telemetry_ack_seconds_count",
    "cc_unit_to_screen_seconds_count",
    "cc_screens_connected",
    "cc_screen_messages_dropped_total",
    "cc_event_loop_lag_seconds_count",
    'cc_media_sessions{role="unit"}',
    "cc_media_frames_forwarded_total",
    'cc_media_frames_dropped_total{where="viewer"}',
    "cc_recording_bytes_total",
    "cc_recording_segments_sealed_total",
    'cc_recording_segment_verifications_total{result="mismatch"}',
    "cc_query_feedback_seconds_count",
    'cc_agency_breaker_state{state="closed"}',
    "cc_store_up",
    "cc_bus_up",
    "cc_positions_pending",
    'cc_login_failures_total{reason="wrong_credentials"}',
    "cc_leader",
]
WAITED_FOR = [*EXPECTED, 'up{job="no-token"}']  # and the refused target scraped once


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _prometheus(tmp_path: Path, app_port: int) -> AsyncIterator[str]:
    token_file = tmp_path / "scrape-token"
    token_file.write_text(SCRAPE_TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: command-centre
    authorization:
      credentials_file: {token_file}
    static_configs:
      - targets: ["127.0.0.1:{app_port}"]
  - job_name: no-token
    static_configs:
      - targets: ["127.0.0.1:{app_port}"]
"""
    )
    port = _free_port()
    assert PROMETHEUS is not None
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _query(http: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_a_real_prometheus_scrapes_the_series_with_the_token(make_world: AppFactory, tmp_path: Path) -> None:
    world: World = await make_world(observability=ObservabilitySettings(metrics_token=SecretStr(SCRAPE_TOKEN)))
    now_ms = int(time.time() * 1000)
    position = {"seq": 1, "fix_time_ms": now_ms, "lat": 45.75, "lon": 126.64}
    response = await world.client.post("/api/telemetry/batch", json={"positions": [position]},
                                       headers=world.auth("device"))  # fmt: skip
    assert response.status == 200
    assert (await world.client.post("/api/auth/login", json={"username": "judge", "password": "no"})).status == 401
    port = world.client.server.port
    assert port is not None
    async with _prometheus(tmp_path, port) as base, aiohttp.ClientSession() as http:
        missing = EXPECTED
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            with contextlib.suppress(aiohttp.ClientConnectionError):
                found = [expr for expr in WAITED_FOR if await _query(http, base, expr)]
                missing = [expr for expr in WAITED_FOR if expr not in found]
                if not missing:
                    break
        assert not missing, f"series Prometheus never stored: {missing}"
        stored = await _query(http, base, 'cc_positions_total{outcome="stored", job="command-centre"}')
        assert float(stored[0]["value"][1]) == 1
        ups = {r["metric"]["job"]: r["value"][1] for r in await _query(http, base, "up")}
        assert ups == {"command-centre": "1", "no-token": "0"}
        async with http.get(f"{base}/api/v1/targets") as response:
            targets = (await response.json())["data"]["activeTargets"]
        refused = next(t for t in targets if t["labels"]["job"] == "no-token")
        assert "401" in refused["lastError"], refused
