"""Views of a room's pinned unit that only the room admitted end on every server process.

A member from another court involved in a room (a cross-court operation's) may watch the unit the room pins
though it is outside their courts: the room admits the view. When they leave, or the host closes the room,
that view must end. It lives in the process where the unit streams, which need not be the one answering
the leave or close (nor the room's media home). So the process that answers announces it: it ends the
matching views of its own media hub at once and publishes on the bus topic ``rooms.pinned_views_ended``;
every process (the sender too) ends the viewer sessions of that unit owned by those users, idempotently,
as revocation reaches other processes (``command_center.revocation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from core.ids import UnitId, UserId
from event_bus.port import EventBus
from media.peers import AnySession
from media.table import Role as MediaRole

log = logging.getLogger(__name__)

PINNED_TOPIC = "rooms.pinned_views_ended"


class Views(Protocol):
    """The media sessions of this process (``media.sessions.MediaHub``)."""

    async def end_where(self, match: Callable[[AnySession], bool], reason: str) -> int: ...


def _ended(unit_id: str, user_ids: Collection[int]) -> Callable[[AnySession], bool]:
    """A view of the unit owned by one of the users."""
    return lambda s: (s.role is MediaRole.VIEWER and s.unit_id == unit_id and s.owner is not None
                      and s.owner.user_id in user_ids)  # fmt: skip


class PinnedViews:
    """Ends, on every process, the views of a room's pinned unit held by members the room no longer admits."""

    def __init__(self, bus: EventBus, media: Views) -> None:
        self._bus = bus
        self._media = media
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._follow = asyncio.create_task(self._follow_bus(ready), name="pinned-views-follow")
        await ready

    async def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow

    async def announce(self, room_id: str, unit_id: UnitId, user_ids: Collection[UserId], reason: str) -> None:
        """End here at once, then tell every process. A bus that is away is logged, not raised: the views
        here ended; those on other processes run on until they end (the room's state is stored already)."""
        await self.apply(room_id, unit_id, user_ids, reason)
        event = {"room_id": room_id, "unit_id": unit_id, "user_ids": sorted(user_ids), "reason": reason}
        try:
            await self._bus.publish(PINNED_TOPIC, event)
        except Exception as exc:
            log.warning("rooms: the end of room %s's views of unit %s not published (%s)", room_id, unit_id, exc)

    async def apply(self, room_id: str, unit_id: UnitId, user_ids: Collection[UserId], reason: str) -> int:
        """End this process's views of the unit held by those users; idempotent."""
        ended = await self._media.end_where(_ended(unit_id, set(user_ids)), reason)
        if ended:
            log.info("rooms: %d view(s) of unit %s admitted by room %s ended: %s", ended, unit_id, room_id, reason)
        return ended

    async def _follow_bus(self, ready: asyncio.Future[None]) -> None:
        async with self._bus.subscribe([PINNED_TOPIC], max_queue=10_000) as subscription:
            ready.set_result(None)
            while True:
                try:
                    event = await subscription.get()
                    await self.apply(*_parsed(event.data))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a lag (events lost) or a bad event: the next one still counts
                    log.warning("rooms: an event ending pinned views was missed or bad", exc_info=True)


def _parsed(data: Mapping[str, Any]) -> tuple[str, UnitId, list[UserId], str]:
    user_ids = [UserId(int(u)) for u in data["user_ids"]]
    return str(data["room_id"]), UnitId(str(data["unit_id"])), user_ids, str(data.get("reason", "left the room"))[:100]
