"""Query-string parameters read one way everywhere, each refused with a message naming it."""

from __future__ import annotations

from aiohttp import web

from core.errors import ValidationFailed


def whole_number(raw: str) -> int | None:
    """The value of a string of ASCII digits (at most 18, so it fits a BIGINT), else None. ``str.isdigit``
    alone would also accept '¹' or '٣', which ``int`` then refuses."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """``?name=true|false``."""
    raw = request.query.get(name, "true" if default else "false")
    if raw not in ("true", "false"):
        raise ValidationFailed(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def bounded_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """``?name=<integer in [low, high]>``."""
    raw = request.query.get(name, str(default))
    value = whole_number(raw)
    if value is None or not low <= value <= high:
        raise ValidationFailed(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


#: The largest epoch millisecond accepted (9999-12-31T23:59:59.999Z): beyond it no date exists, and the
#: database's BIGINT and Python's datetime both give up a little further on (a 500 instead of a reason).
MAX_EPOCH_MS = 253_402_300_799_999


def epoch_ms(request: web.Request, name: str, *, default: int | None = None) -> int:
    """``?name=<epoch milliseconds from 0 to 9999-12-31>``; required when ``default`` is None."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise ValidationFailed(f"{name} is required (epoch milliseconds)")
        return default
    value = whole_number(raw)
    if value is None or value > MAX_EPOCH_MS:
        raise ValidationFailed(f"{name} must be epoch milliseconds from 0 to {MAX_EPOCH_MS}, got {raw!r}")
    return value
