"""Which courts' data a caller may see (上下一体).

Admins see everything. Supervisors and operators see their court and every court below it: a high
court's command centre watches the whole province. Judges and devices see their own court only.
"""

from __future__ import annotations

from typing import Protocol

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
