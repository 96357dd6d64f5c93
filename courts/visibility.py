"""Which courts' data a caller may see (上下一体).

Admins see everything. Supervisors and operators see their court and every court below it: a high
court's command centre watches the whole province. Judges and devices see their own court only.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.errors import Forbidden
from core.ids import CourtId
from persistence.models import Role


class Viewer(Protocol):
    """Who asks (``command_center.auth.Caller``; a protocol, so the courts' rule needs nothing of the edge)."""

    @property
    def access(self) -> str: ...

    @property
    def court_id(self) -> CourtId: ...


class CourtTree(Protocol):
    async def court_subtree(self, court_id: CourtId) -> list[CourtId]: ...


class Courts(CourtTree, Protocol):
    async def list_courts(self) -> list[Any]: ...


async def visible_courts(store: CourtTree, caller: Viewer) -> list[CourtId] | None:
    """The court ids the caller may see; ``None`` means all."""
    if caller.access == Role.ADMIN:
        return None
    if caller.access in (Role.SUPERVISOR, Role.OPERATOR):
        return await store.court_subtree(caller.court_id)
    return [caller.court_id]


async def require_visible(store: CourtTree, caller: Viewer, court_id: CourtId) -> None:
    courts = await visible_courts(store, caller)
    if courts is not None and court_id not in courts:
        raise Forbidden(f"court {court_id} is outside your jurisdiction")


async def oversees_every_court(store: Courts, caller: Viewer) -> bool:
    """Whether the caller sees every court (an admin, a supervisor or operator of the one top court): what a
    process-wide figure (the 运维 overview) needs, since it cannot be narrowed to a court's share."""
    courts = await visible_courts(store, caller)
    return courts is None or set(courts) == {c.id for c in await store.list_courts()}
