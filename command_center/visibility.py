"""Which courts' data a caller may see (上下一体).

Admins see everything. Supervisors and operators see their court and every court below it: a high
court's command centre watches the whole province. Judges and devices see their own court only.
"""

from __future__ import annotations

from command_center.auth import Access, Caller
from core.errors import Forbidden
from core.ids import CourtId
from persistence.port import Store


async def visible_courts(store: Store, caller: Caller) -> list[CourtId] | None:
    """The court ids the caller may see; ``None`` means all."""
    if caller.access is Access.ADMIN:
        return None
    if caller.access in (Access.SUPERVISOR, Access.OPERATOR):
        return await store.court_subtree(caller.court_id)
    return [caller.court_id]


async def require_visible(store: Store, caller: Caller, court_id: CourtId) -> None:
    courts = await visible_courts(store, caller)
    if courts is not None and court_id not in courts:
        raise Forbidden(f"court {court_id} is outside your jurisdiction")
