"""The query guard's storage (``persistence.query_guard_port``), written once for both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from core.ids import CaseId, PartyId, QueryId, UserId
from persistence.database import Database, Row
from persistence.query_guard_port import QueriedParty, QueryRequestKey

#: First key of the per-judge advisory lock taken while a query request is counted against the limits.
QUERY_SLOT_LOCK = 0x51534C54


def _key(row: Row) -> QueryRequestKey:
    query_id = None if row["query_id"] is None else QueryId(row["query_id"])
    return QueryRequestKey(UserId(row["judge_id"]), row["key"], row["body_hash"], query_id, row["created_ms"])


class QueryGuardSql:
    if TYPE_CHECKING:
        database: Database

    async def claim_query_key(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int
    ) -> tuple[QueryRequestKey, bool]:
        row = await self.database.fetchrow(
            "INSERT INTO query_requests (judge_id, key, body_hash, created_ms) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (judge_id, key) DO NOTHING RETURNING *",
            judge_id, key, body_hash, at_ms,
        )  # fmt: skip
        if row is not None:
            return _key(row), True
        row = await self.database.fetchrow(
            "SELECT * FROM query_requests WHERE judge_id = $1 AND key = $2", judge_id, key
        )
        assert row is not None  # claims are deleted only while unbound, by the request that made them
        return _key(row), False

    async def claim_query_slot(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int, since_ms: int, admit: Callable[[list[int]], bool]
    ) -> tuple[QueryRequestKey | None, bool]:
        async with self.database.transaction(hold=(QUERY_SLOT_LOCK, judge_id)) as conn:  # one judge at a time
            earlier = await conn.fetchrow(
                "SELECT * FROM query_requests WHERE judge_id = $1 AND key = $2", judge_id, key
            )
            if earlier is not None:
                return _key(earlier), False
            rows = await conn.fetch(
                "SELECT created_ms FROM queries WHERE judge_id = $1 AND created_ms >= $2 UNION ALL SELECT created_ms"
                " FROM query_requests WHERE judge_id = $1 AND query_id IS NULL AND created_ms >= $2",
                judge_id, since_ms,
            )  # fmt: skip
            if not admit(sorted(int(r[0]) for r in rows)):
                return None, False
            row = await conn.fetchrow(
                "INSERT INTO query_requests (judge_id, key, body_hash, created_ms) VALUES ($1, $2, $3, $4) RETURNING *",
                judge_id, key, body_hash, at_ms,
            )  # fmt: skip
            assert row is not None
            return _key(row), True

    async def bind_query_key(self, judge_id: UserId, key: str, query_id: QueryId) -> None:
        await self.database.execute(
            "UPDATE query_requests SET query_id = $1 WHERE judge_id = $2 AND key = $3", query_id, judge_id, key
        )

    async def release_query_key(self, judge_id: UserId, key: str) -> None:
        await self.database.execute(
            "DELETE FROM query_requests WHERE judge_id = $1 AND key = $2 AND query_id IS NULL", judge_id, key
        )

    async def judge_query_times(self, judge_id: UserId, since_ms: int) -> list[int]:
        rows = await self.database.fetch(
            "SELECT created_ms FROM queries WHERE judge_id = $1 AND created_ms >= $2 ORDER BY created_ms",
            judge_id, since_ms,
        )  # fmt: skip
        return [int(r[0]) for r in rows]

    async def judge_queried_parties(self, judge_id: UserId, since_ms: int) -> list[QueriedParty]:
        rows = await self.database.fetch(
            "SELECT DISTINCT q.id, q.case_id, q.created_ms, p.id AS party_id, p.identifier FROM queries q"
            " JOIN query_jobs j ON j.query_id = q.id JOIN case_parties p ON p.id = j.party_id"
            " WHERE q.judge_id = $1 AND q.created_ms >= $2 ORDER BY q.created_ms, q.id, p.id",
            judge_id, since_ms,
        )  # fmt: skip
        return [QueriedParty(QueryId(r[0]), CaseId(r[1]), int(r[2]), PartyId(r[3]), r[4]) for r in rows]
