"""Typed application keys: every long-lived object the app owns, created in the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from cluster.port import Coordinator
from cluster.processes import Processes
from command_center.credentials import Passwords, VerifyGate
from command_center.metrics import Metrics
from command_center.request_rates import RequestRates
from command_center.throttle import LoginGuard
from command_center.tickets import TicketBook
from config.settings import Settings
from event_bus.port import EventBus
from persistence.port import Store

if TYPE_CHECKING:  # these modules import the auth layer, which reads the keys above
    from alarms.desk import AlarmDesk
    from command_center.forwarding import HopNonces
    from command_center.idle_sockets import IdleSockets
    from command_center.metrics_state import StateReader
    from command_center.pinned_views import PinnedViews
    from command_center.revocation import Revocations
    from command_center.screens.hub import ScreenHub
    from consultations.desk import RoomDesk
    from entrustments.desk import EntrustmentDesk
    from field_units.geofence_watch import GeofenceWatch
    from field_units.tasks import TaskDesk
    from field_units.tracker import Tracker
    from field_units.writer import PositionWriter
    from gb28181.media.live import LiveStreams
    from gb28181.service import GbService
    from gb28181.transport import SipServer
    from maps.report_pool import ReportPool
    from maps.tile_archive import TileArchive
    from media.rooms import RoomMedia
    from media.sessions import MediaHub
    from media.verification import SegmentVerifier
    from operations.desk import OperationDesk
    from query_control.agencies import AgencyConfig
    from query_control.audit import AuditLog
    from query_control.broker import Broker
    from query_control.checkpoints import Checkpointer
    from query_control.followups import FollowUps
    from query_control.gateway import AgencyGateway

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", EventBus)
CLUSTER = web.AppKey("cluster", Coordinator)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
#: The secret the server processes share, signing a request one forwards to another (``forwarding``).
HOP_SECRET = web.AppKey("hop_secret", str)
#: The nonces of forwarded requests already taken here (``forwarding.HopNonces``): a hop is taken once.
HOP_NONCES: web.AppKey[HopNonces] = web.AppKey("hop_nonces")
PASSWORDS = web.AppKey("passwords", Passwords)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginGuard)
LOGIN_GATE = web.AppKey("login_gate", VerifyGate)
ENTRUSTMENT_RATES = web.AppKey("entrustment_rates", RequestRates)
OPENAPI = web.AppKey("openapi", dict[str, Any])
TRACKER: web.AppKey[Tracker] = web.AppKey("tracker")
WRITER: web.AppKey[PositionWriter] = web.AppKey("position_writer")
HUB: web.AppKey[ScreenHub] = web.AppKey("screen_hub")
ALARMS: web.AppKey[AlarmDesk] = web.AppKey("alarm_desk")
TASKS: web.AppKey[TaskDesk] = web.AppKey("task_desk")
OPERATIONS: web.AppKey[OperationDesk] = web.AppKey("operation_desk")
ENTRUSTMENTS: web.AppKey[EntrustmentDesk] = web.AppKey("entrustment_desk")
ROOMS: web.AppKey[RoomDesk] = web.AppKey("room_desk")
ROOM_MEDIA: web.AppKey[RoomMedia] = web.AppKey("room_media")
GEOFENCES: web.AppKey[GeofenceWatch] = web.AppKey("geofence_watch")
AGENCIES: web.AppKey[list[AgencyConfig]] = web.AppKey("agencies")
GATEWAY: web.AppKey[AgencyGateway] = web.AppKey("agency_gateway")
BROKER: web.AppKey[Broker] = web.AppKey("query_broker")
FOLLOWUPS: web.AppKey[FollowUps] = web.AppKey("followups")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit_log")
MEDIA: web.AppKey[MediaHub] = web.AppKey("media_hub")
CHECKPOINTER: web.AppKey[Checkpointer] = web.AppKey("audit_checkpointer")
REPORTS: web.AppKey[ReportPool] = web.AppKey("report_pool")
#: The court's tile archive, when maps.tile_archive names one (absent otherwise).
TILE_ARCHIVE: web.AppKey[TileArchive] = web.AppKey("tile_archive")
TICKETS = web.AppKey("tickets", TicketBook)
REVOCATIONS: web.AppKey[Revocations] = web.AppKey("revocations")
PINNED_VIEWS: web.AppKey[PinnedViews] = web.AppKey("pinned_views")
IDLE_UNIT_SOCKETS: web.AppKey[IdleSockets] = web.AppKey("idle_unit_sockets")
GB28181: web.AppKey[GbService] = web.AppKey("gb28181")  # present only when gb28181.enabled
GB28181_SIP: web.AppKey[SipServer] = web.AppKey("gb28181_sip")  # its sockets; ``port`` is the one bound
GB_LIVE: web.AppKey[LiveStreams] = web.AppKey("gb28181_live")  # likewise: GB units' live video
METRICS = web.AppKey("metrics", Metrics)
STATE: web.AppKey[StateReader] = web.AppKey("state_reader")  # what /metrics and the 运维 page read
VERIFIER: web.AppKey[SegmentVerifier] = web.AppKey("segment_verifier")  # recorded segments re-hashed
PROCESSES = web.AppKey("processes", Processes)  # every process's record, for the 运维 page
