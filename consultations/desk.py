"""The desk that runs consultation rooms (执行会商): each step (open, invite, join, leave, mute, close) is
appended to the audit chain, and opening and closing are written in the duty log of the matter's court, so a
later review reads who conferred, when, and who was silenced.

Who may be invited (authorised for a court involved) is decided at the edge from the court hierarchy; the
desk enforces the room's own rules: only the host invites, mutes and closes; only invited people join; a
closed room changes no more.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from consultations.models import Member, Room, RoomStatus
from consultations.port import RoomStore
from core.errors import Conflict, Forbidden, NotFound
from core.ids import CaseId, CourtId, UnitId, UserId
from operations.desk import DutyLog


def _now_ms() -> int:
    return int(time.time() * 1000)


class RoomDeskStore(RoomStore, DutyLog, Protocol):
    pass


class Auditor(Protocol):
    """The hash-chained audit log (``query_control.audit.AuditLog``)."""

    async def record(
        self, action: str, actor_id: UserId | None, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> object: ...


class RoomDesk:
    def __init__(self, store: RoomDeskStore, audit: Auditor, *, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._audit = audit
        self._clock_ms = clock_ms

    async def open(
        self,
        *,
        title: str,
        court_ids: Sequence[CourtId],
        operation_id: str | None,
        case_id: CaseId | None,
        unit_id: UnitId | None,
        host_id: UserId,
        invited: Sequence[UserId],
    ) -> Room:
        """Open a room with its host present; ``court_ids`` are the courts involved, the matter's first."""
        now = self._clock_ms()
        courts = tuple(dict.fromkeys(court_ids))
        draft = Room(uuid.uuid4().hex, title, courts[0], courts, operation_id, case_id, unit_id, host_id,
                     RoomStatus.OPEN, now, None)  # fmt: skip
        room = await self._store.add_room(draft)
        guests = [u for u in dict.fromkeys(invited) if u != host_id]
        await self._store.invite_to_room(room.id, [host_id, *guests], invited_by=host_id, at_ms=now)
        await self._store.set_room_presence(room.id, host_id, present=True, at_ms=now)
        await self._step(room, "opened", host_id, {"invited": guests, "court_ids": list(courts)})
        await self._store.add_duty_note(room.court_id, host_id, f"执行会商「{title}」开始", now)
        return room

    async def invite(self, room: Room, user_ids: Sequence[UserId], by: UserId) -> list[UserId]:
        self._host(room, by, "invite")
        self._open(room)
        added = await self._store.invite_to_room(room.id, user_ids, invited_by=by, at_ms=self._clock_ms())
        if added:
            await self._step(room, "invited", by, {"user_ids": added})
        return added

    async def join(self, room: Room, user_id: UserId) -> Member:
        self._open(room)
        return await self._presence(room, user_id, present=True)

    async def leave(self, room: Room, user_id: UserId) -> Member:
        return await self._presence(room, user_id, present=False)

    async def mute(self, room: Room, user_id: UserId, *, muted: bool, by: UserId) -> Member:
        """The host stops (or restores) forwarding of a participant's audio to the others."""
        self._host(room, by, "mute")
        self._open(room)
        member = await self._store.set_room_muted(room.id, user_id, muted=muted)
        if member is None:
            raise NotFound(f"user {user_id} is not invited to room {room.id}")
        await self._step(room, "muted" if muted else "unmuted", by, {"user_id": user_id})
        return member

    async def close(self, room: Room, by: UserId) -> Room:
        self._host(room, by, "close the room")
        now = self._clock_ms()
        closed = await self._store.close_room(room.id, at_ms=now)
        if closed is None:
            raise Conflict(f"room {room.id} is closed already")
        for member in await self._store.room_members(room.id):
            if member.present:
                await self._store.set_room_presence(room.id, member.user_id, present=False, at_ms=now)
        await self._step(closed, "closed", by, {})
        await self._store.add_duty_note(room.court_id, by, f"执行会商「{room.title}」结束", now)
        return closed

    async def _presence(self, room: Room, user_id: UserId, *, present: bool) -> Member:
        members = {m.user_id: m for m in await self._store.room_members(room.id)}
        if user_id not in members:
            raise Forbidden(f"you are not invited to room {room.id}")
        member = await self._store.set_room_presence(room.id, user_id, present=present, at_ms=self._clock_ms())
        if member is None:  # joined twice or left twice: nothing to record
            return members[user_id]
        await self._step(room, "joined" if present else "left", user_id, {})
        return member

    @staticmethod
    def _host(room: Room, by: UserId, what: str) -> None:
        if by != room.host_id:
            raise Forbidden(f"only the room's host may {what}")

    @staticmethod
    def _open(room: Room) -> None:
        if room.status is not RoomStatus.OPEN:
            raise Conflict(f"room {room.id} is {room.status.value}")

    async def _step(self, room: Room, kind: str, user_id: UserId, details: dict[str, Any]) -> None:
        context = {"room_id": room.id, "court_id": room.court_id, "operation_id": room.operation_id,
                   "case_id": room.case_id}  # fmt: skip
        await self._audit.record(f"room.{kind}", user_id, reason=room.title, details=context | details)
