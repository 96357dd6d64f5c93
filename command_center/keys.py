"""Typed application keys: every long-lived object the app owns, created in a cleanup context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from command_center.credentials import Passwords
from command_center.throttle import LoginThrottle
from config.settings import Settings
from event_bus.port import EventBus
from persistence.port import Store

if TYPE_CHECKING:  # these modules import the auth layer, which reads the keys above
    from command_center.screens.hub import ScreenHub
    from field_units.tracker import Tracker
    from field_units.writer import PositionWriter

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", EventBus)
PASSWORDS = web.AppKey("passwords", Passwords)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
OPENAPI = web.AppKey("openapi", dict[str, Any])
TRACKER: web.AppKey[Tracker] = web.AppKey("tracker")
WRITER: web.AppKey[PositionWriter] = web.AppKey("position_writer")
HUB: web.AppKey[ScreenHub] = web.AppKey("screen_hub")
