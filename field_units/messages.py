"""One telemetry message from a unit, answered: the WebSocket and the WebRTC data channel both use this.

Each text message (a position or an array of them, docs/protocols.md) goes through ``Tracker.ingest``
(validation, dedupe, durable write) and is answered with the ``ack`` JSON, or an ``error`` JSON that
keeps the connection open; a ``task_update`` (the unit reporting on a task) goes to ``report`` and is
answered with ``task_ack``. The limits live here so both transports share them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeGuard

import orjson

from core.errors import AppError
from field_units.telemetry import decode_position
from persistence.availability import store_unavailable
from persistence.models import Unit

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024  # as the WebSocket's max_msg_size
MAX_BATCH = 500  # positions in one message, as on the WebSocket


class Answer(Protocol):
    def encode(self) -> bytes: ...  # the answer as JSON (``Tracker.ingest``: an ``Ack``)


Ingest = Callable[[Unit, object], Awaitable[Answer]]
Report = Callable[[Unit, dict[str, Any]], Awaitable[dict[str, Any]]]


async def answer(ingest: Ingest, unit: Unit, message: str | bytes, report: Report | None = None) -> bytes:
    """The reply to one data-channel message (JSON text, pre-serialised).

    One coroutine from the message to its ack (the ingest's own aside): under load a second's worth of
    messages wait for their commit at once, and every coroutine each is more work for the loop and for the
    garbage collector's passes. (The WebSocket takes its messages without one: ``command_center.unit_socket``.)"""
    try:
        data = decode(message)
    except Refused as refused:
        return refused.reply
    if is_task_update(data):
        return await report_task(report, unit, data)
    try:
        ack = await ingest(unit, data)
    except Exception as exc:
        return failure(unit, exc)
    return ack.encode()


class Refused(Exception):
    """A message refused before any processing; ``reply`` is the error to send back."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def decode(message: str | bytes) -> object:
    """The message's content: positions to ingest, or a task update (``is_task_update``).

    Raises ``Refused`` for a binary message, one too large, text that is not JSON or too many positions."""
    if isinstance(message, bytes):
        raise Refused(error("bad_request", "send JSON text messages"))
    if len(message) > MAX_MESSAGE:
        raise Refused(error("payload_too_large", f"message larger than {MAX_MESSAGE} bytes"))
    data: object = decode_position(message)  # the common message, parsed and checked at once
    if data is None:
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise Refused(error("invalid_json", f"not JSON: {exc}")) from None
        if isinstance(data, list) and len(data) > MAX_BATCH:
            raise Refused(error("validation_failed", f"{len(data)} positions in one message; limit {MAX_BATCH}"))
    return data


def is_task_update(data: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(data, dict) and data.get("type") == "task_update"


def failure(unit: Unit, exc: BaseException) -> bytes:
    """The error to answer a message whose ingest raised ``exc`` with (the connection outlives any failure)."""
    if isinstance(exc, ValueError):
        return error("validation_failed", str(exc))
    if isinstance(exc, AppError):  # e.g. the database is down and the buffer full: the unit keeps and resends
        return error(exc.code, exc.message)
    if store_unavailable(exc):
        return error("unavailable", "the database is unavailable; nothing was stored, send it again")
    log.error("unit %s: a telemetry message failed", unit.id, exc_info=exc)
    return error("internal", "internal error; it has been logged; nothing was stored, send it again")


async def report_task(report: Report | None, unit: Unit, data: dict[str, Any]) -> bytes:
    """The reply to a unit's task update."""
    if report is None:
        return error("bad_request", "task updates go over the telemetry WebSocket")
    try:
        return orjson.dumps(await report(unit, data))
    except AppError as exc:
        return error(exc.code, exc.message)
    except Exception as exc:
        if store_unavailable(exc):
            return error("unavailable", "the database is unavailable; report the task again")
        log.exception("unit %s: a task update failed", unit.id)
        return error("internal", "internal error; it has been logged")


def error(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message})
