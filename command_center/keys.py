"""Typed application keys: every long-lived object the app owns, created in a cleanup context."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from command_center.credentials import Passwords
from config.settings import Settings
from event_bus.port import EventBus
from persistence.port import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", EventBus)
PASSWORDS = web.AppKey("passwords", Passwords)
OPENAPI = web.AppKey("openapi", dict[str, Any])
