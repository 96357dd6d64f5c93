"""Every endpoint registry of the app, in one list: routing, the OpenAPI document and the authorisation
test all read it."""

from __future__ import annotations

from command_center.api import (
    alarms,
    audit,
    case_source,
    directory,
    dispatch,
    duty,
    entrustments,
    gb28181,
    geofences,
    map_config,
    media,
    observability,
    operations,
    queries,
    reports,
    room_media,
    rooms,
    screens,
    sessions,
    stats,
    system,
    tasks,
    telemetry,
    tickets,
)
from command_center.api.registry import Endpoint, Registry

REGISTRIES: tuple[Registry, ...] = (
    system.api,
    sessions.api,
    directory.api,
    map_config.api,
    telemetry.api,
    alarms.api,
    tasks.api,
    duty.api,
    stats.api,
    operations.api,
    entrustments.api,
    rooms.api,
    room_media.api,
    geofences.api,
    dispatch.api,
    reports.api,
    screens.api,
    queries.api,
    case_source.api,
    media.api,
    audit.api,
    tickets.api,
    gb28181.api,
    observability.api,
)


def all_endpoints() -> list[Endpoint]:
    return [endpoint for registry in REGISTRIES for endpoint in registry.endpoints]
