"""Structured logs: JSON lines carrying the ids the edge bound (unit, connection, query), readable text lines
for the demo, and the server's own lines about a unit's socket carry the unit's id as a field."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from command_center.logs import JsonFormatter, TextFormatter, configure_logging
from core import log_context
from tests.conftest import World


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
    return logging.LogRecord("field_units.tracker", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_json_line_carries_the_bound_ids_and_readable_chinese() -> None:
    with log_context.bound(unit_id="HLJ0102-U01", connection_id="ab12cd34"):
        line = JsonFormatter().format(_record("单兵 %s 离线", "道里一号"))
    data = orjson.loads(line)
    assert data["message"] == "单兵 道里一号 离线" and "单兵" in line  # not \\u escaped
    assert data["level"] == "warning" and data["logger"] == "field_units.tracker"
    assert data["unit_id"] == "HLJ0102-U01" and data["connection_id"] == "ab12cd34"
    assert data["ts"].endswith("+00:00")
    assert "unit_id" not in orjson.loads(JsonFormatter().format(_record("after the block")))


def test_an_exception_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("坏数据")
    except ValueError as exc:
        line = JsonFormatter().format(_record("failed", exc=exc))
    assert "\n" not in line
    assert "ValueError: 坏数据" in orjson.loads(line)["exception"]


def test_a_text_line_names_the_ids_on_the_message_line() -> None:
    with log_context.bound(query_id="q-1"):
        text = TextFormatter().format(_record("query complete"))
    assert text.endswith("field_units.tracker: query complete [query_id=q-1]")
    assert TextFormatter().format(_record("plain")).endswith(": plain")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The root logger in JSON mode, written to a buffer; the previous handlers restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_the_units_socket_lines_carry_its_unit_and_connection(world: World, json_logs: io.StringIO) -> None:
    ticket = await world.ticket("device")
    async with world.client.ws_connect(f"/api/telemetry/ws?ticket={ticket}") as ws:
        await ws.send_json({"positions": []})
        await ws.receive(timeout=5)
    await world.client.get("/api/health")
    lines = [orjson.loads(line) for line in json_logs.getvalue().splitlines()]
    socket_lines = [line for line in lines if "telemetry socket" in line["message"]]
    assert len(socket_lines) == 2, lines  # open and closed
    assert {line["unit_id"] for line in socket_lines} == {"HLJ0102-U01"}
    assert len({line["connection_id"] for line in socket_lines}) == 1
    assert not [line for line in lines if "unit_id" in line and "telemetry socket" not in line["message"]
                and line["logger"] != "field_units.messages"]  # fmt: skip
