"""What screens and the API show of an alarm, and the bus topic it travels on (docs/protocols.md)."""

from __future__ import annotations

from typing import Any

from alarms.models import Alarm
from core.ids import CourtId


def alarms_topic(court_id: CourtId) -> str:
    """The court's alarm topic: the desk publishes here, screens subscribe (kept with the alarms, not the
    units, so field_units can use the desk without alarms importing field_units back)."""
    return f"alarms.{court_id}"


def alarm_view(alarm: Alarm) -> dict[str, Any]:
    return {
        "id": alarm.id,
        "kind": alarm.kind.value,
        "subject": alarm.subject,
        "court_id": alarm.court_id,
        "unit_id": alarm.unit_id,
        "name": alarm.details.get("unit_name"),
        "details": alarm.details,
        "raised_ms": alarm.raised_ms,
        "state": alarm.state.value,
        "active": alarm.active,
        "cleared_ms": alarm.cleared_ms,
        "repeats": alarm.repeats,
        "acknowledged_by": alarm.acknowledged_by,
        "acknowledged_ms": alarm.acknowledged_ms,
        "closed_by": alarm.closed_by,
        "closed_ms": alarm.closed_ms,
        "note": alarm.note,
    }
