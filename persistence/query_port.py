"""The storage the asset-query work needs (cases, queries, jobs, assets, follow-ups, audit log).

Part of the ``Store`` port; kept in its own protocol so the query work reads as one piece. Jobs and
follow-ups change state only through compare-and-set methods, so a retried or resumed step can never
move a record backwards or apply twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from core.checkpoint import Checkpoint
from core.errors import FencedOut
from core.fencing import Fence
from core.ids import AssetId, CaseId, CourtId, FollowUpId, JobId, QueryId, UserId
from persistence.query_models import (
    Asset,
    AuditDraft,
    AuditEntry,
    Case,
    CaseSource,
    CaseStatus,
    FollowUp,
    FollowUpStatus,
    Job,
    JobOutcome,
    Party,
    PartyKind,
    Query,
)


class AuditStore(Protocol):
    """The hash-chained audit log and its checkpoints (``query_control.audit``, ``core.checkpoint``)."""

    # audit log ----------------------------------------------------------------------------------------
    async def append_audit(self, draft: AuditDraft) -> AuditEntry:
        """Append one entry to the hash chain, serialised against every other writer (also across processes)."""

    async def audit_entries(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries with seq > after_seq, oldest first."""

    async def unit_audit_entries(
        self, unit_id: str, action: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[AuditEntry]:
        """A unit's entries of one action (e.g. its recording segments) after ``after_seq``, oldest first:
        an indexed read (migration 030), however long the chain."""

    async def audit_head(self) -> tuple[int, str] | None:
        """The newest entry's (seq, hash); None for an empty log."""

    # audit checkpoints (core.checkpoint) ----------------------------------------------------------------
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint of this centre's chain; one already stored at its seq is kept."""

    async def audit_checkpoints(self) -> list[Checkpoint]:
        """This centre's stored checkpoints, oldest first."""

    async def witness_checkpoint(self, checkpoint: Checkpoint, *, received_ms: int) -> bool:
        """Append a lower court's checkpoint: True if new, False if the same one was already held.

        Raises ``CheckpointFork`` when the court's checkpoint at that seq had another head and
        ``CheckpointBackwards`` when the court already has a later one; serialised across processes.
        """

    async def witnessed_checkpoints(self, court: str) -> list[Checkpoint]:
        """A lower court's checkpoints held here, oldest first (what ``audit witness-export`` prints)."""


class QueryStore(AuditStore, Protocol):
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
        """Create a case with its parties (kind, name, identifier) and judges in one transaction."""

    async def get_case(self, case_id: CaseId) -> Case: ...

    async def list_cases(
        self, *, court_ids: Sequence[CourtId] | None = None, judge_id: UserId | None = None
    ) -> list[Case]:
        """Cases of these courts (None: all), or only those ``judge_id`` is assigned to; newest first."""

    async def add_party(self, case_id: CaseId, kind: PartyKind, name: str, identifier: str) -> Party: ...

    async def set_case_judges(self, case_id: CaseId, judge_ids: Sequence[UserId]) -> None: ...

    # queries and their jobs ---------------------------------------------------------------------------
    async def add_query(self, query: Query, jobs: Sequence[Job], *, audit: AuditDraft) -> AuditEntry:
        """Persist the query, all its jobs and its audit entry in one transaction, before anything is sent:
        a query is never sent unaudited. ServiceUnavailable (and nothing stored) when the audit write fails."""

    async def get_query(self, query_id: QueryId) -> Query: ...

    async def list_queries(self, *, case_id: CaseId | None = None, judge_id: UserId | None = None) -> list[Query]:
        """Newest first."""

    async def running_queries(self) -> list[Query]:
        """Queries not yet complete (a restart resumes them)."""

    async def query_jobs(self, query_id: QueryId) -> list[Job]: ...

    async def start_job_attempts(
        self, job_ids: Sequence[JobId], at_ms: int, *, fences: Sequence[Fence | None] = ()
    ) -> dict[JobId, int | FencedOut]:
        """Count one more request of each pending job before it is sent, in one transaction; the new
        counts of the jobs that were still pending (the others are absent: nothing must be sent).
        ``fences`` (one per job, or empty: none) are checked in the same transaction (``core.fencing``):
        a job whose lease grant is stale is not counted and maps to a FencedOut; the others go ahead.
        On a connection kept for the broker's grouped writes (``Database.transaction(reserved=True)``), as
        ``finish_jobs``: a burst of other traffic cannot hold up the agencies' requests or answers."""

    async def finish_jobs(self, outcomes: Sequence[JobOutcome]) -> list[tuple[Job, list[Asset]] | FencedOut | None]:
        """Record the outcomes (and assets) of distinct jobs in one transaction; per outcome, in order, the
        job and all its assets, or None when the job had already ended. An answer replaces ``pending`` or
        ``timed_out`` (a late answer is kept); a failure replaces only ``pending``. An outcome whose
        ``fence`` is stale is not recorded (a FencedOut in its place); the others are. An outcome recorded
        with ``completes_query`` also completes its query at its ``at_ms`` when none of the query's jobs is
        left pending (and it was not complete already); nothing is timed out that way."""

    async def complete_query(self, query_id: QueryId, at_ms: int, *, fence: Fence | None = None) -> list[Job]:
        """Mark the query complete and its pending jobs timed out; return the jobs marked now. FencedOut
        (and nothing changed) when ``fence`` is stale."""

    async def query_assets(self, query_id: QueryId) -> list[Asset]: ...

    async def get_asset(self, asset_id: AssetId) -> Asset: ...

    # follow-ups ---------------------------------------------------------------------------------------
    async def add_followup(self, followup: FollowUp, check: Callable[[list[FollowUp]], None] | None = None) -> FollowUp:
        """Conflict when a follow-up with this id exists. ``check`` is given the asset's follow-ups (oldest
        first) in the same transaction, one follow-up of an asset at a time across processes, and raises to
        refuse: requests sent at once cannot all pass the same history (six deductions of the whole frozen
        amount were all recorded)."""

    async def get_followup(self, followup_id: FollowUpId) -> FollowUp: ...

    async def list_followups(
        self,
        *,
        query_id: QueryId | None = None,
        case_ids: Sequence[CaseId] | None = None,
        statuses: Sequence[FollowUpStatus] | None = None,
    ) -> list[FollowUp]:
        """Oldest first."""

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
        """Move a follow-up from one of ``expect`` to ``status``; None (and no change) when it was elsewhere;
        FencedOut (and no change) when ``fence`` is stale."""
