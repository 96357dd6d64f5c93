"""What screens and the API show of an operation, and the bus topic it travels on (docs/protocols.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.ids import CourtId
from operations.models import Operation, OperationEvent


def operations_topic(court_id: CourtId) -> str:
    return f"operations.{court_id}"


def operation_view(op: Operation, events: Sequence[OperationEvent] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": op.id, "court_id": op.court_id, "kind": op.kind.value, "title": op.title, "case_id": op.case_id,
        "commander_id": op.commander_id, "onsite_commander": op.onsite_commander, "target": op.target,
        "unit_ids": list(op.unit_ids), "status": op.status.value, "created_by": op.created_by,
        "created_ms": op.created_ms, "started_ms": op.started_ms, "ended_ms": op.ended_ms,
    }  # fmt: skip
    if events is not None:
        view["timeline"] = [{"at_ms": e.at_ms, "kind": e.kind, "user_id": e.user_id, "text": e.text, "ref": e.ref}
                            for e in events]  # fmt: skip
    return view
