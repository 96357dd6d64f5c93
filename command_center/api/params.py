"""Query-string parameters read one way everywhere, each refused with a message naming it."""

from __future__ import annotations

from aiohttp import web

from core.errors import ValidationFailed


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """``?name=true|false``."""
    raw = request.query.get(name, "true" if default else "false")
    if raw not in ("true", "false"):
        raise ValidationFailed(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def bounded_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """``?name=<integer in [low, high]>``."""
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)
