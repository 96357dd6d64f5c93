"""Consultation rooms (``consultations.port``), written once for both databases (``persistence.database``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consultations.models import Member, Room, RoomStatus
from core.errors import Conflict, NotFound
from core.ids import CaseId, CourtId, UnitId, UserId
from persistence.database import Database, Row


def room_from_row(r: Row) -> Room:
    return Room(r["id"], r["title"], CourtId(r["court_id"]), tuple(CourtId(c) for c in json.loads(r["court_ids"])),
                r["operation_id"], None if r["case_id"] is None else CaseId(r["case_id"]),
                None if r["unit_id"] is None else UnitId(r["unit_id"]), UserId(r["host_id"]),
                RoomStatus(r["status"]), r["created_ms"], r["closed_ms"])  # fmt: skip


def member_from_row(r: Row) -> Member:
    return Member(r["room_id"], UserId(r["user_id"]), UserId(r["invited_by"]), r["invited_ms"], bool(r["present"]),
                  bool(r["muted"]), r["joined_ms"], r["left_ms"])  # fmt: skip


class RoomsSql:
    if TYPE_CHECKING:
        database: Database

    async def add_room(self, room: Room) -> Room:
        try:
            row = await self.database.fetchrow(
                "INSERT INTO rooms (id, title, court_id, court_ids, operation_id, case_id, unit_id, host_id, status,"
                " created_ms, closed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
                room.id, room.title, room.court_id, json.dumps(list(room.court_ids)), room.operation_id,
                room.case_id, room.unit_id, room.host_id, room.status.value, room.created_ms, room.closed_ms,
            )  # fmt: skip
        except Conflict:
            raise Conflict(f"room {room.id} exists") from None
        assert row is not None
        return room_from_row(row)

    async def get_room(self, room_id: str) -> Room:
        row = await self.database.fetchrow("SELECT * FROM rooms WHERE id = $1", room_id)
        if row is None:
            raise NotFound(f"room {room_id} does not exist")
        return room_from_row(row)

    async def rooms_of(self, user_id: UserId | None, *, statuses: Sequence[RoomStatus] | None) -> list[Room]:
        rows = await self.database.fetch(
            "SELECT * FROM rooms r WHERE ($1::bigint IS NULL OR r.host_id = $1 OR EXISTS (SELECT 1 FROM room_members m"
            " WHERE m.room_id = r.id AND m.user_id = $1)) AND ($2::text[] IS NULL OR r.status = ANY($2))"
            " ORDER BY r.created_ms DESC, r.id",
            user_id, None if statuses is None else [s.value for s in statuses],
        )  # fmt: skip
        return [room_from_row(r) for r in rows]

    async def close_room(self, room_id: str, *, at_ms: int) -> Room | None:
        row = await self.database.fetchrow(
            "UPDATE rooms SET status = 'closed', closed_ms = $2 WHERE id = $1 AND status = 'open' RETURNING *",
            room_id, at_ms,
        )  # fmt: skip
        if row is None:
            await self.get_room(room_id)  # NotFound when there is no such room
            return None
        return room_from_row(row)

    async def invite_to_room(
        self, room_id: str, user_ids: Sequence[UserId], *, invited_by: UserId, at_ms: int
    ) -> list[UserId]:
        wanted = list(dict.fromkeys(user_ids))
        async with self.database.transaction() as conn:
            users, args = conn.rows_table(4, [("user_id", "bigint")], [(u,) for u in wanted])
            rows = await conn.fetch(
                "INSERT INTO room_members (room_id, user_id, invited_by, invited_ms)"
                f" SELECT $1, v.user_id, $2, $3 FROM {users} WHERE true ON CONFLICT DO NOTHING RETURNING user_id",
                room_id, invited_by, at_ms, *args,
            )  # fmt: skip
        added = {r["user_id"] for r in rows}
        return [u for u in wanted if u in added]

    async def room_members(self, room_id: str) -> list[Member]:
        rows = await self.database.fetch(
            "SELECT * FROM room_members WHERE room_id = $1 ORDER BY invited_ms, user_id", room_id
        )
        return [member_from_row(r) for r in rows]

    async def set_room_presence(self, room_id: str, user_id: UserId, *, present: bool, at_ms: int) -> Member | None:
        stamp = "joined_ms" if present else "left_ms"
        row = await self.database.fetchrow(
            f"UPDATE room_members SET present = $3, {stamp} = $4 WHERE room_id = $1 AND user_id = $2"
            " AND present <> $3 RETURNING *",
            room_id, user_id, present, at_ms,
        )  # fmt: skip
        return None if row is None else member_from_row(row)

    async def set_room_muted(self, room_id: str, user_id: UserId, *, muted: bool) -> Member | None:
        row = await self.database.fetchrow(
            "UPDATE room_members SET muted = $3 WHERE room_id = $1 AND user_id = $2 RETURNING *",
            room_id, user_id, muted,
        )  # fmt: skip
        return None if row is None else member_from_row(row)
