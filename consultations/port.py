"""The storage consultation rooms need; part of the ``Store`` port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consultations.models import Member, Room, RoomStatus
from core.ids import UserId


class RoomStore(Protocol):
    async def add_room(self, room: Room) -> Room: ...

    async def get_room(self, room_id: str) -> Room:
        """NotFound when there is none."""

    async def rooms_of(self, user_id: UserId | None, *, statuses: Sequence[RoomStatus] | None) -> list[Room]:
        """Rooms the user hosts or is invited to (None: every room), newest first."""

    async def close_room(self, room_id: str, *, at_ms: int) -> Room | None:
        """Compare-and-set open → closed; None when it was closed already; NotFound if there is none."""

    async def invite_to_room(
        self, room_id: str, user_ids: Sequence[UserId], *, invited_by: UserId, at_ms: int
    ) -> list[UserId]:
        """Invite each user not yet invited; return those newly invited, in the order given."""

    async def room_members(self, room_id: str) -> list[Member]:
        """Oldest invitation first."""

    async def set_room_presence(self, room_id: str, user_id: UserId, *, present: bool, at_ms: int) -> Member | None:
        """Join (present) or leave, stamping joined_ms / left_ms; None if the user is not invited or already
        was in that state."""

    async def set_room_muted(self, room_id: str, user_id: UserId, *, muted: bool) -> Member | None:
        """None if the user is not invited."""
