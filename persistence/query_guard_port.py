"""The storage the abuse rules on asset queries need; part of the ``Store`` port.

Counting a judge's queries from the store (not from a process's memory) makes the per-judge limits hold
across every server process; the Idempotency-Key of a query request is claimed in the store before the
query is made, so a double click sent to two processes at once still makes one query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.ids import CaseId, PartyId, QueryId, UserId


@dataclass(frozen=True, slots=True)
class QueryRequestKey:
    """A judge's Idempotency-Key on ``POST /api/queries``; ``query_id`` None while the query is being made."""

    judge_id: UserId
    key: str
    body_hash: str
    query_id: QueryId | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class QueriedParty:
    """One party one query of a judge asked about (what the abuse watch reads)."""

    query_id: QueryId
    case_id: CaseId
    created_ms: int
    party_id: PartyId
    identifier: str


class QueryGuardStore(Protocol):
    async def claim_query_key(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int
    ) -> tuple[QueryRequestKey, bool]:
        """Claim the key for this judge; the record and True when claimed now, the earlier record and False
        when the judge used the key before (whoever claimed it: this process or another)."""

    async def claim_query_slot(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int, since_ms: int, admit: Callable[[list[int]], bool]
    ) -> tuple[QueryRequestKey | None, bool]:
        """``claim_query_key`` and the judge's limits in one step, one request of a judge at a time across
        processes (so requests sent at once cannot all pass the same count): the earlier record and False when
        the judge used the key before; otherwise ``admit`` is given the creation times since ``since_ms`` of the
        judge's queries and of its requests in flight (claimed, no query yet), and the key is claimed (record,
        True) only when it returns True, else (None, False)."""

    async def bind_query_key(self, judge_id: UserId, key: str, query_id: QueryId) -> None:
        """The query the claimed key made."""

    async def release_query_key(self, judge_id: UserId, key: str) -> None:
        """Forget a claim whose query was not made (refused), so the key may be used again."""

    async def judge_query_times(self, judge_id: UserId, since_ms: int) -> list[int]:
        """Creation times of the judge's queries since ``since_ms``, oldest first."""

    async def judge_queried_parties(self, judge_id: UserId, since_ms: int) -> list[QueriedParty]:
        """Every (query, party) of the judge's queries since ``since_ms``, oldest first."""
