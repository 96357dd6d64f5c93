"""The access log keeps requests worth reading: by default only refusals and failures; with ``all`` every
request but successful health probes and metrics scrapes; with ``off`` none."""

from __future__ import annotations

import asyncio
import logging

import pytest

from config.settings import ObservabilitySettings
from tests.conftest import AppFactory, World


async def _requests(world: World) -> None:
    for _ in range(3):
        assert (await world.client.get("/api/health")).status == 200
    assert (await world.client.get("/metrics", headers=world.auth("admin"))).status == 200
    assert (await world.client.get("/api/units", headers=world.auth("operator"))).status == 200
    assert (await world.client.get("/api/health/details")).status == 401


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]


async def test_by_default_only_refusals_and_failures_are_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await _requests(world)
    lines = _lines(caplog)
    assert len(lines) == 1 and '"GET /api/health/details HTTP' in lines[0] and " 401 " in lines[0], lines


async def test_all_logs_every_request_but_health_probes_and_scrapes(
    make_world: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world(observability=ObservabilitySettings(access_log="all"))
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await _requests(world)
    lines = _lines(caplog)
    assert not [line for line in lines if '"GET /api/health HTTP' in line or '"GET /metrics HTTP' in line], lines
    assert any('"GET /api/units HTTP' in line for line in lines), lines
    assert any('"GET /api/health/details HTTP' in line and " 401 " in line for line in lines), lines
    http = [getattr(r, "http", None) for r in caplog.records if r.name == "aiohttp.access"]
    units = http[-2]  # the JSON log's fields of the line (command_center.logs)
    assert units is not None and {"method": "GET", "target": "/api/units", "status": 200}.items() <= units.items()


async def test_off_logs_nothing(make_world: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    world = await make_world(observability=ObservabilitySettings(access_log="off"))
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await _requests(world)
    assert _lines(caplog) == []


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS ClientHello on the plain port
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nAuthorization Bearer dev_secret\r\n\r\n",  # a header missing its colon
    ],
    ids=["tls-on-plain-port", "malformed-header"],
)
async def test_a_request_refused_before_routing_is_answered_400_and_logged_without_a_traceback(
    make_world: AppFactory, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    """aiohttp answers an unparsable request itself, with no route matched; the access log must not fail
    on it (``request.app`` asserts then), and the log gets no traceback for it: a flood of garbage would be a
    flood of tracebacks."""
    world = await make_world(observability=ObservabilitySettings(access_log="all"))
    caplog.set_level(logging.INFO)
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(garbage)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.") and b" 400 " in status_line, status_line
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert any(" 400 " in line for line in _lines(caplog)), _lines(caplog)
    if garbage.startswith(b"GET"):  # HTTP with a mistake: one line saying what it was (TLS: aiohttp's DEBUG)
        said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
        assert said == ["unparsable request from 127.0.0.1 (answered 400): BadHttpMessage"], said
    assert not [r for r in caplog.records if "dev_secret" in r.getMessage()]  # what it sent stays out of the log
