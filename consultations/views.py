"""Rooms as the API and the console show them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consultations.models import Member, Room


def room_view(room: Room, members: Sequence[Member] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": room.id, "title": room.title, "court_id": room.court_id, "court_ids": list(room.court_ids),
        "operation_id": room.operation_id, "case_id": room.case_id, "unit_id": room.unit_id,
        "host_id": room.host_id, "status": room.status.value, "created_ms": room.created_ms,
        "closed_ms": room.closed_ms,
    }  # fmt: skip
    if members is not None:
        view["members"] = [member_view(m) for m in members]
    return view


def member_view(m: Member) -> dict[str, Any]:
    return {"user_id": m.user_id, "invited_by": m.invited_by, "invited_ms": m.invited_ms, "present": m.present,
            "muted": m.muted, "joined_ms": m.joined_ms, "left_ms": m.left_ms}  # fmt: skip
