"""What the API and the console show of an entrustment (docs/protocols.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.ids import CourtId
from entrustments.models import Entrustment, EntrustmentEvent


def entrustments_topic(court_id: CourtId) -> str:
    """The court's entrustment topic: every step of an entrustment goes to both courts' (asking, receiving)."""
    return f"entrustments.{court_id}"


def entrustment_view(e: Entrustment, events: Sequence[EntrustmentEvent] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": e.id, "from_court_id": e.from_court_id, "to_court_id": e.to_court_id, "task": e.task,
        "address": e.address, "lat": e.lat, "lon": e.lon, "deadline_ms": e.deadline_ms, "reason": e.reason,
        "status": e.status.value, "unit_ids": list(e.unit_ids), "created_by": e.created_by,
        "created_ms": e.created_ms, "decided_ms": e.decided_ms, "ended_ms": e.ended_ms,
        "overdue_ms": e.overdue_ms,
    }  # fmt: skip
    if events is not None:
        view["timeline"] = [{"at_ms": ev.at_ms, "kind": ev.kind, "court_id": ev.court_id, "user_id": ev.user_id,
                             "text": ev.text, "ref": ev.ref} for ev in events]  # fmt: skip
    return view
