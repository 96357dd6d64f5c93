"""SQLite side of the query store (see ``persistence.query_port``); mixed into ``SqliteStore``.

The store has one connection, so a multi-statement transaction is serialised by an asyncio lock (two
coroutines must not interleave their BEGIN … COMMIT on it) and by ``BEGIN IMMEDIATE`` across processes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.checkpoint import Checkpoint
from core.errors import Conflict, FencedOut, NotFound, ServiceUnavailable
from core.fencing import Fence, admitted, newest_per_lease, refusal
from core.hashchain import GENESIS, chain_hash
from core.ids import AgencyId, AssetId, CaseId, CourtId, FollowUpId, JobId, PartyId, QueryId, UserId
from persistence.query_models import (
    Asset,
    AuditDraft,
    AuditEntry,
    Case,
    CaseSource,
    CaseStatus,
    FollowUp,
    FollowUpAction,
    FollowUpStatus,
    Job,
    JobOutcome,
    JobStatus,
    Party,
    PartyKind,
    Query,
    audit_content,
    decode_details,
    witness_outcome,
)


def translate_integrity_error(exc: sqlite3.IntegrityError) -> Exception:
    text = str(exc)
    if "UNIQUE" in text or "PRIMARY KEY" in text:
        return Conflict(f"already exists ({text.split(':', 1)[-1].strip()})")
    if "FOREIGN KEY" in text:
        return NotFound("a referenced record does not exist")
    return Conflict(f"constraint violated: {text}")


async def _hold_fences(db: aiosqlite.Connection, fences: Sequence[Fence | None]) -> dict[str, int]:
    """Raise each lease's fence row to the batch's epoch unless a newer grant has written (``core.fencing``),
    inside the caller's ``BEGIN IMMEDIATE`` transaction. Returns the epochs accepted, per lease name."""
    held: dict[str, int] = {}
    for name, epoch in newest_per_lease(fences).items():
        cursor = await db.execute(
            "INSERT INTO lease_fences (name, epoch) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET epoch = excluded.epoch WHERE lease_fences.epoch <= excluded.epoch RETURNING epoch",
            (name, epoch),
        )
        if await cursor.fetchone() is not None:
            held[name] = epoch
        await cursor.close()
    return held


async def _hold_fence(db: aiosqlite.Connection, fence: Fence | None) -> None:
    """One write's fence: FencedOut (the transaction rolls back) when a newer grant has written."""
    if fence is not None and not admitted(fence, await _hold_fences(db, [fence])):
        raise refusal(fence)


async def _append_audit_in(db: aiosqlite.Connection, draft: AuditDraft) -> AuditEntry:
    """Append one entry inside the caller's ``BEGIN IMMEDIATE`` transaction (the database's write lock keeps
    the chain one line); a failed write is ServiceUnavailable and rolls the whole unit back."""
    try:
        cursor = await db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        last = await cursor.fetchone()
        await cursor.close()
        seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
        content = audit_content(seq, draft.action, draft.actor_id, draft.at_ms, draft.reason, draft.case_id,
                                draft.query_id, draft.details)  # fmt: skip
        digest = chain_hash(prev, content)
        await db.execute(
            "INSERT INTO audit_log (seq, action, actor_id, at_ms, reason, case_id, query_id, details, prev_hash,"
            " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, draft.action, draft.actor_id, draft.at_ms, draft.reason, draft.case_id, draft.query_id,
             _dumps(draft.details), prev, digest),
        )  # fmt: skip
    except sqlite3.Error as exc:
        raise ServiceUnavailable(f"the audit log could not be written ({draft.action}): {exc}") from exc
    return AuditEntry(seq, draft.action, draft.actor_id, draft.at_ms, draft.reason, draft.case_id, draft.query_id,
                      draft.details, prev, digest)  # fmt: skip


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values)) or "NULL"


class SqliteQueries:
    _tx_lock: asyncio.Lock | None = None

    if TYPE_CHECKING:

        @property
        def db(self) -> aiosqlite.Connection: ...

    @asynccontextmanager
    async def _serial(self) -> AsyncIterator[None]:
        """Hold the connection: no statement of another coroutine runs inside an open transaction."""
        if self._tx_lock is None:
            self._tx_lock = asyncio.Lock()
        async with self._tx_lock:
            yield

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._serial():
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException as exc:
                await db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise translate_integrity_error(exc) from exc
                raise
            else:
                await db.execute("COMMIT")

    async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._serial():
            try:
                cursor = await self.db.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise translate_integrity_error(exc) from exc
            rows = await cursor.fetchall()
        await cursor.close()
        return list(rows)

    # cases --------------------------------------------------------------------------------------------
    async def add_case(
        self,
        *,
        case_number: str,
        court_id: CourtId,
        title: str,
        created_by: UserId | None,
        created_ms: int,
        parties: Sequence[tuple[PartyKind, str, str]] = (),
        judge_ids: Sequence[UserId] = (),
        status: CaseStatus = CaseStatus.ACTIVE,
        source: CaseSource = CaseSource.MANUAL,
    ) -> Case:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO cases (case_number, court_id, title, created_by, created_ms, status, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case_number, court_id, title, created_by, created_ms, status.value, source.value),
            )
            case_id = cursor.lastrowid
            await cursor.close()
            await db.executemany(
                "INSERT INTO case_parties (case_id, kind, name, identifier) VALUES (?, ?, ?, ?)",
                [(case_id, kind.value, name, ident) for kind, name, ident in parties],
            )
            await db.executemany(
                "INSERT INTO case_judges (case_id, user_id) VALUES (?, ?)",
                [(case_id, j) for j in dict.fromkeys(judge_ids)],
            )
        assert case_id is not None
        return await self.get_case(CaseId(case_id))

    async def _cases(self, rows: list[aiosqlite.Row]) -> list[Case]:
        ids = [r["id"] for r in rows]
        parties = await self._q(f"SELECT * FROM case_parties WHERE case_id IN ({_marks(ids)}) ORDER BY id", ids)
        judges = await self._q(
            f"SELECT case_id, user_id FROM case_judges WHERE case_id IN ({_marks(ids)}) ORDER BY user_id", ids
        )
        by_case: dict[int, list[Party]] = {}
        for p in parties:
            by_case.setdefault(p["case_id"], []).append(
                Party(PartyId(p["id"]), CaseId(p["case_id"]), PartyKind(p["kind"]), p["name"], p["identifier"])
            )
        judges_of: dict[int, list[UserId]] = {}
        for j in judges:
            judges_of.setdefault(j["case_id"], []).append(UserId(j["user_id"]))
        return [
            Case(
                CaseId(r["id"]),
                r["case_number"],
                CourtId(r["court_id"]),
                r["title"],
                None if r["created_by"] is None else UserId(r["created_by"]),
                r["created_ms"],
                tuple(by_case.get(r["id"], ())),
                tuple(judges_of.get(r["id"], ())),
                CaseStatus(r["status"]),
                CaseSource(r["source"]),
            )
            for r in rows
        ]

    async def get_case(self, case_id: CaseId) -> Case:
        rows = await self._q("SELECT * FROM cases WHERE id = ?", (case_id,))
        if not rows:
            raise NotFound(f"case {case_id} does not exist")
        return (await self._cases(rows))[0]

    async def list_cases(
        self, *, court_ids: Sequence[CourtId] | None = None, judge_id: UserId | None = None
    ) -> list[Case]:
        clauses: list[str] = []
        args: list[Any] = []
        if court_ids is not None:
            clauses.append(f"court_id IN ({_marks(court_ids)})")
            args.extend(court_ids)
        if judge_id is not None:
            clauses.append("id IN (SELECT case_id FROM case_judges WHERE user_id = ?)")
            args.append(judge_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._cases(await self._q(f"SELECT * FROM cases {where} ORDER BY id DESC", args))

    async def add_party(self, case_id: CaseId, kind: PartyKind, name: str, identifier: str) -> Party:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO case_parties (case_id, kind, name, identifier) VALUES (?, ?, ?, ?)",
                (case_id, kind.value, name, identifier),
            )
            party_id = cursor.lastrowid
            await cursor.close()
        assert party_id is not None
        return Party(PartyId(party_id), case_id, kind, name, identifier)

    async def set_case_judges(self, case_id: CaseId, judge_ids: Sequence[UserId]) -> None:
        async with self._tx() as db:
            cursor = await db.execute("SELECT 1 FROM cases WHERE id = ?", (case_id,))
            found = await cursor.fetchone()
            await cursor.close()
            if found is None:
                raise NotFound(f"case {case_id} does not exist")
            await db.execute("DELETE FROM case_judges WHERE case_id = ?", (case_id,))
            await db.executemany(
                "INSERT INTO case_judges (case_id, user_id) VALUES (?, ?)",
                [(case_id, j) for j in dict.fromkeys(judge_ids)],
            )

    # queries ------------------------------------------------------------------------------------------
    async def add_query(self, query: Query, jobs: Sequence[Job], *, audit: AuditDraft) -> AuditEntry:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO queries (id, case_id, judge_id, reason, created_ms, deadline_ms, completed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (query.id, query.case_id, query.judge_id, query.reason, query.created_ms, query.deadline_ms,
                 query.completed_ms),
            )  # fmt: skip
            await db.executemany(
                "INSERT INTO query_jobs (id, query_id, party_id, agency_id, status, attempts, error, created_ms,"
                " updated_ms, answered_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(j.id, j.query_id, j.party_id, j.agency_id, j.status.value, j.attempts, j.error, j.created_ms,
                  j.updated_ms, j.answered_ms) for j in jobs],
            )  # fmt: skip
            return await _append_audit_in(db, audit)

    @staticmethod
    def _query(r: aiosqlite.Row) -> Query:
        return Query(QueryId(r["id"]), CaseId(r["case_id"]), UserId(r["judge_id"]), r["reason"], r["created_ms"],
                     r["deadline_ms"], r["completed_ms"])  # fmt: skip

    @staticmethod
    def _job(r: aiosqlite.Row) -> Job:
        return Job(JobId(r["id"]), QueryId(r["query_id"]), PartyId(r["party_id"]), AgencyId(r["agency_id"]),
                   JobStatus(r["status"]), r["attempts"], r["error"], r["created_ms"], r["updated_ms"],
                   r["answered_ms"])  # fmt: skip

    async def get_query(self, query_id: QueryId) -> Query:
        rows = await self._q("SELECT * FROM queries WHERE id = ?", (query_id,))
        if not rows:
            raise NotFound(f"query {query_id} does not exist")
        return self._query(rows[0])

    async def list_queries(self, *, case_id: CaseId | None = None, judge_id: UserId | None = None) -> list[Query]:
        rows = await self._q(
            "SELECT * FROM queries WHERE (? IS NULL OR case_id = ?) AND (? IS NULL OR judge_id = ?)"
            " ORDER BY created_ms DESC, id",
            (case_id, case_id, judge_id, judge_id),
        )
        return [self._query(r) for r in rows]

    async def running_queries(self) -> list[Query]:
        rows = await self._q("SELECT * FROM queries WHERE completed_ms IS NULL ORDER BY created_ms")
        return [self._query(r) for r in rows]

    async def query_jobs(self, query_id: QueryId) -> list[Job]:
        rows = await self._q("SELECT * FROM query_jobs WHERE query_id = ? ORDER BY agency_id, party_id", (query_id,))
        return [self._job(r) for r in rows]

    async def start_job_attempts(
        self, job_ids: Sequence[JobId], at_ms: int, *, fences: Sequence[Fence | None] = ()
    ) -> dict[JobId, int | FencedOut]:
        if not job_ids:
            return {}
        fenced = list(fences) or [None] * len(job_ids)
        counts: dict[JobId, int | FencedOut] = {}
        async with self._tx() as db:
            held = await _hold_fences(db, fenced)
            allowed = [j for j, f in zip(job_ids, fenced, strict=True) if admitted(f, held)]
            if allowed:
                cursor = await db.execute(
                    "UPDATE query_jobs SET attempts = attempts + 1, updated_ms = ? "
                    f"WHERE id IN ({_marks(allowed)}) AND status = 'pending' RETURNING id, attempts",
                    (at_ms, *allowed),
                )
                counts.update({JobId(r[0]): int(r[1]) for r in await cursor.fetchall()})
                await cursor.close()
        for job_id, fence in zip(job_ids, fenced, strict=True):
            if fence is not None and not admitted(fence, held):
                counts[job_id] = refusal(fence)
        return counts

    async def finish_jobs(self, outcomes: Sequence[JobOutcome]) -> list[tuple[Job, list[Asset]] | FencedOut | None]:
        ids = [o.job_id for o in outcomes]
        if len(set(ids)) != len(ids):
            raise ValueError("finish_jobs: a job may end only once per call")
        results: list[tuple[Job, list[Asset]] | FencedOut | None] = []
        async with self._tx() as db:
            held = await _hold_fences(db, [o.fence for o in outcomes])
            for o in outcomes:
                if o.fence is not None and not admitted(o.fence, held):
                    results.append(refusal(o.fence))
                    continue
                answer = o.status in (JobStatus.ANSWERED, JobStatus.NO_ASSETS)
                replaceable = ["pending", "timed_out"] if answer else ["pending"]
                cursor = await db.execute(
                    "UPDATE query_jobs SET status = ?, error = ?, updated_ms = ?, answered_ms = ? "
                    f"WHERE id = ? AND status IN ({_marks(replaceable)}) RETURNING *",
                    (o.status.value, o.error, o.at_ms, o.at_ms if answer else None, o.job_id, *replaceable),
                )
                row = await cursor.fetchone()
                await cursor.close()
                if row is None:
                    results.append(None)
                    continue
                await db.executemany(
                    "INSERT INTO assets (query_id, job_id, agency_id, party_id, kind, ref, description, value_cents,"
                    " details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, ref) DO NOTHING",
                    [(row["query_id"], o.job_id, row["agency_id"], row["party_id"], a.kind, a.ref, a.description,
                      a.value_cents, _dumps(a.details)) for a in o.assets],
                )  # fmt: skip
                cursor = await db.execute("SELECT * FROM assets WHERE job_id = ? ORDER BY id", (o.job_id,))
                assets = [self._asset(r) for r in await cursor.fetchall()]
                await cursor.close()
                results.append((self._job(row), assets))
        return results

    async def complete_query(self, query_id: QueryId, at_ms: int, *, fence: Fence | None = None) -> list[Job]:
        async with self._tx() as db:
            await _hold_fence(db, fence)
            cursor = await db.execute(
                "UPDATE query_jobs SET status = 'timed_out', updated_ms = ? WHERE query_id = ? AND status = 'pending' "
                "RETURNING *",
                (at_ms, query_id),
            )
            rows = await cursor.fetchall()
            await cursor.close()
            await db.execute(
                "UPDATE queries SET completed_ms = ? WHERE id = ? AND completed_ms IS NULL", (at_ms, query_id)
            )
        return sorted((self._job(r) for r in rows), key=lambda j: (j.agency_id, j.party_id))

    @staticmethod
    def _asset(r: aiosqlite.Row) -> Asset:
        return Asset(AssetId(r["id"]), QueryId(r["query_id"]), JobId(r["job_id"]), AgencyId(r["agency_id"]),
                     PartyId(r["party_id"]), r["kind"], r["ref"], r["description"], r["value_cents"],
                     json.loads(r["details"]))  # fmt: skip

    async def query_assets(self, query_id: QueryId) -> list[Asset]:
        return [
            self._asset(r) for r in await self._q("SELECT * FROM assets WHERE query_id = ? ORDER BY id", (query_id,))
        ]

    async def get_asset(self, asset_id: AssetId) -> Asset:
        rows = await self._q("SELECT * FROM assets WHERE id = ?", (asset_id,))
        if not rows:
            raise NotFound(f"asset {asset_id} does not exist")
        return self._asset(rows[0])

    # follow-ups ---------------------------------------------------------------------------------------
    @staticmethod
    def _followup(r: aiosqlite.Row) -> FollowUp:
        return FollowUp(
            id=FollowUpId(r["id"]), asset_id=AssetId(r["asset_id"]), query_id=QueryId(r["query_id"]),
            case_id=CaseId(r["case_id"]), agency_id=AgencyId(r["agency_id"]), action=FollowUpAction(r["action"]),
            amount_cents=r["amount_cents"], reason=r["reason"], requested_by=UserId(r["requested_by"]),
            requested_ms=r["requested_ms"], status=FollowUpStatus(r["status"]), attempts=r["attempts"],
            approved_by=None if r["approved_by"] is None else UserId(r["approved_by"]), decided_ms=r["decided_ms"],
            agency_ref=r["agency_ref"], error=r["error"], updated_ms=r["updated_ms"],
        )  # fmt: skip

    async def add_followup(self, followup: FollowUp, check: Callable[[list[FollowUp]], None] | None = None) -> FollowUp:
        f = followup
        async with self._tx() as db:  # BEGIN IMMEDIATE: the check and the insert, one writer at a time
            if check is not None:
                cursor = await db.execute(
                    "SELECT * FROM followups WHERE asset_id = ? ORDER BY requested_ms, id", (f.asset_id,)
                )
                check([self._followup(r) for r in await cursor.fetchall()])
                await cursor.close()
            cursor = await db.execute(
                "INSERT INTO followups (id, asset_id, query_id, case_id, agency_id, action, amount_cents, reason,"
                " requested_by, requested_ms, status, attempts, approved_by, decided_ms, agency_ref, error, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (f.id, f.asset_id, f.query_id, f.case_id, f.agency_id, f.action.value, f.amount_cents, f.reason,
                 f.requested_by, f.requested_ms, f.status.value, f.attempts, f.approved_by, f.decided_ms, f.agency_ref,
                 f.error, f.updated_ms or f.requested_ms),
            )  # fmt: skip
            row = await cursor.fetchone()
            await cursor.close()
        assert row is not None
        return self._followup(row)

    async def get_followup(self, followup_id: FollowUpId) -> FollowUp:
        rows = await self._q("SELECT * FROM followups WHERE id = ?", (followup_id,))
        if not rows:
            raise NotFound(f"follow-up {followup_id} does not exist")
        return self._followup(rows[0])

    async def list_followups(
        self,
        *,
        query_id: QueryId | None = None,
        case_ids: Sequence[CaseId] | None = None,
        statuses: Sequence[FollowUpStatus] | None = None,
    ) -> list[FollowUp]:
        clauses: list[str] = []
        args: list[Any] = []
        if query_id is not None:
            clauses.append("query_id = ?")
            args.append(query_id)
        if case_ids is not None:
            clauses.append(f"case_id IN ({_marks(case_ids)})")
            args.extend(case_ids)
        if statuses is not None:
            clauses.append(f"status IN ({_marks(statuses)})")
            args.extend(s.value for s in statuses)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [
            self._followup(r) for r in await self._q(f"SELECT * FROM followups {where} ORDER BY requested_ms, id", args)
        ]

    async def update_followup(
        self,
        followup_id: FollowUpId,
        *,
        expect: Sequence[FollowUpStatus],
        status: FollowUpStatus,
        at_ms: int,
        approved_by: UserId | None = None,
        agency_ref: str | None = None,
        error: str | None = None,
        count_attempt: bool = False,
        fence: Fence | None = None,
    ) -> FollowUp | None:
        async with self._tx() as db:
            await _hold_fence(db, fence)
            cursor = await db.execute(
                "UPDATE followups SET status = ?, updated_ms = ?, approved_by = coalesce(?, approved_by),"
                " decided_ms = CASE WHEN ? IS NULL THEN decided_ms ELSE ? END, agency_ref = coalesce(?, agency_ref),"
                f" error = ?, attempts = attempts + ? WHERE id = ? AND status IN ({_marks(expect)}) RETURNING *",
                (status.value, at_ms, approved_by, approved_by, at_ms, agency_ref, error, int(count_attempt),
                 followup_id, *[s.value for s in expect]),
            )  # fmt: skip
            row = await cursor.fetchone()
            await cursor.close()
        return None if row is None else self._followup(row)

    # audit --------------------------------------------------------------------------------------------
    async def append_audit(self, draft: AuditDraft) -> AuditEntry:
        async with self._tx() as db:
            return await _append_audit_in(db, draft)

    async def audit_entries(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        rows = await self._q("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
        return [
            AuditEntry(
                r["seq"],
                r["action"],
                None if r["actor_id"] is None else UserId(r["actor_id"]),
                r["at_ms"],
                r["reason"],
                None if r["case_id"] is None else CaseId(r["case_id"]),
                None if r["query_id"] is None else QueryId(r["query_id"]),
                details,
                r["prev_hash"],
                r["hash"],
                corrupt,
            )
            for r in rows
            for details, corrupt in (decode_details(r["details"]),)
        ]

    async def audit_head(self) -> tuple[int, str] | None:
        rows = await self._q("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return None if not rows else (int(rows[0]["seq"]), str(rows[0]["hash"]))

    # audit checkpoints --------------------------------------------------------------------------------
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO audit_checkpoints (seq, court, head, at_ms, key, sig) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (seq) DO NOTHING",
                (checkpoint.seq, checkpoint.court, checkpoint.head, checkpoint.at_ms, checkpoint.key, checkpoint.sig),
            )

    async def audit_checkpoints(self) -> list[Checkpoint]:
        rows = await self._q("SELECT * FROM audit_checkpoints ORDER BY seq")
        return [_checkpoint(r) for r in rows]

    async def witness_checkpoint(self, checkpoint: Checkpoint, *, received_ms: int) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT seq, head FROM audit_witness WHERE court = ? AND seq >= ? ORDER BY seq DESC",
                (checkpoint.court, checkpoint.seq),
            )
            later = list(await cursor.fetchall())
            await cursor.close()
            outcome = witness_outcome(checkpoint, [(int(r[0]), str(r[1])) for r in later])
            if outcome:
                await db.execute(
                    "INSERT INTO audit_witness (court, seq, head, at_ms, key, sig, received_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (checkpoint.court, checkpoint.seq, checkpoint.head, checkpoint.at_ms, checkpoint.key,
                     checkpoint.sig, received_ms),
                )  # fmt: skip
        return outcome

    async def witnessed_checkpoints(self, court: str) -> list[Checkpoint]:
        rows = await self._q("SELECT * FROM audit_witness WHERE court = ? ORDER BY seq", (court,))
        return [_checkpoint(r) for r in rows]


def _checkpoint(r: aiosqlite.Row) -> Checkpoint:
    """SQLite keeps whatever is written into a column: an ``at_ms`` that is not an integer cannot be what was
    signed, so it is read as -1 and the checkpoint fails its signature check (reported as forged, no crash)."""
    seq = int(r["seq"])
    at_ms = r["at_ms"] if isinstance(r["at_ms"], int) else -1
    return Checkpoint(r["court"], seq, seq, r["head"], at_ms, r["key"], r["sig"])
