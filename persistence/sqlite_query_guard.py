"""SQLite side of the query guard store (see ``persistence.query_guard_port``); mixed into ``SqliteStore``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.ids import CaseId, PartyId, QueryId, UserId
from persistence.query_guard_port import QueriedParty, QueryRequestKey


def _key(row: Any) -> QueryRequestKey:
    query_id = None if row["query_id"] is None else QueryId(row["query_id"])
    return QueryRequestKey(UserId(row["judge_id"]), row["key"], row["body_hash"], query_id, row["created_ms"])


class SqliteQueryGuard:
    if TYPE_CHECKING:

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...
        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    async def claim_query_key(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int
    ) -> tuple[QueryRequestKey, bool]:
        rows = await self._q(
            "INSERT INTO query_requests (judge_id, key, body_hash, created_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (judge_id, key) DO NOTHING RETURNING *",
            (judge_id, key, body_hash, at_ms),
        )
        if rows:
            return _key(rows[0]), True
        rows = await self._q("SELECT * FROM query_requests WHERE judge_id = ? AND key = ?", (judge_id, key))
        return _key(rows[0]), False

    async def claim_query_slot(
        self, judge_id: UserId, key: str, body_hash: str, at_ms: int, since_ms: int, admit: Callable[[list[int]], bool]
    ) -> tuple[QueryRequestKey | None, bool]:
        async with self._tx() as db:  # BEGIN IMMEDIATE: one writer at a time, across processes
            cursor = await db.execute("SELECT * FROM query_requests WHERE judge_id = ? AND key = ?", (judge_id, key))
            earlier = await cursor.fetchone()
            await cursor.close()
            if earlier is not None:
                return _key(earlier), False
            cursor = await db.execute(
                "SELECT created_ms FROM queries WHERE judge_id = ? AND created_ms >= ? UNION ALL SELECT created_ms"
                " FROM query_requests WHERE judge_id = ? AND query_id IS NULL AND created_ms >= ?",
                (judge_id, since_ms, judge_id, since_ms),
            )
            times = sorted(int(r[0]) for r in await cursor.fetchall())
            await cursor.close()
            if not admit(times):
                return None, False
            cursor = await db.execute(
                "INSERT INTO query_requests (judge_id, key, body_hash, created_ms) VALUES (?, ?, ?, ?) RETURNING *",
                (judge_id, key, body_hash, at_ms),
            )
            row = await cursor.fetchone()
            await cursor.close()
            return _key(row), True

    async def bind_query_key(self, judge_id: UserId, key: str, query_id: QueryId) -> None:
        await self._q(
            "UPDATE query_requests SET query_id = ? WHERE judge_id = ? AND key = ?", (query_id, judge_id, key)
        )

    async def release_query_key(self, judge_id: UserId, key: str) -> None:
        await self._q("DELETE FROM query_requests WHERE judge_id = ? AND key = ? AND query_id IS NULL", (judge_id, key))

    async def judge_query_times(self, judge_id: UserId, since_ms: int) -> list[int]:
        rows = await self._q(
            "SELECT created_ms FROM queries WHERE judge_id = ? AND created_ms >= ? ORDER BY created_ms",
            (judge_id, since_ms),
        )
        return [int(r[0]) for r in rows]

    async def judge_queried_parties(self, judge_id: UserId, since_ms: int) -> list[QueriedParty]:
        rows = await self._q(
            "SELECT DISTINCT q.id, q.case_id, q.created_ms, p.id AS party_id, p.identifier FROM queries q"
            " JOIN query_jobs j ON j.query_id = q.id JOIN case_parties p ON p.id = j.party_id"
            " WHERE q.judge_id = ? AND q.created_ms >= ? ORDER BY q.created_ms, q.id, p.id",
            (judge_id, since_ms),
        )
        return [QueriedParty(QueryId(r[0]), CaseId(r[1]), int(r[2]), PartyId(r[3]), r[4]) for r in rows]
