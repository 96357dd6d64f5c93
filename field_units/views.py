"""What screens receive about units, and the bus topic it travels on (docs/protocols.md)."""

from __future__ import annotations

from typing import Any

from core.ids import CourtId
from persistence.models import Position, Unit, UnitState


def units_topic(court_id: CourtId) -> str:
    return f"units.{court_id}"


def unit_view(unit: Unit, state: UnitState, position: Position | None) -> dict[str, Any]:
    """A UnitView: identity, displayed status, newest position and when the unit was last heard."""
    return {
        "unit_id": unit.id,
        "name": unit.name,
        "kind": unit.kind.value,
        "court_id": unit.court_id,
        "status": state.status.value,
        # The one meaning of "online" (wall, console, /api/stats): heard within the unit's offline delay. A
        # silent unit in SOS shows status "sos" and is not online.
        "online": state.online,
        "position": None if position is None else position.view(),
        "last_seen_ms": state.last_seen_ms,
    }
