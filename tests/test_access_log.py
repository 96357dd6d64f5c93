"""The access log keeps requests worth reading: a successful health probe leaves no line, anything else does."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import World


async def test_health_probes_leave_no_line_but_other_requests_do(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    for _ in range(3):
        assert (await world.client.get("/api/health")).status == 200
    assert (await world.client.get("/api/units", headers=world.auth("operator"))).status == 200
    assert (await world.client.get("/api/health/details")).status == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert not [line for line in lines if '"GET /api/health HTTP' in line], lines
    assert any('"GET /api/units HTTP' in line for line in lines), lines
    assert any('"GET /api/health/details HTTP' in line and " 401 " in line for line in lines), lines
