"""Records of cases, asset queries, follow-ups and the audit log: frozen dataclasses, no I/O.

Times are epoch milliseconds. JSON-shaped fields (``details``) are plain dicts, stored as canonical JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.checkpoint import Checkpoint
from core.errors import CheckpointBackwards, CheckpointFork
from core.fencing import Fence
from core.ids import (
    AgencyId,
    AssetId,
    CaseId,
    CourtId,
    FollowUpId,
    JobId,
    PartyId,
    ProposalId,
    QueryId,
    SystemClientId,
    UserId,
)


class PartyKind(StrEnum):
    PERSON = "person"  # 自然人: name + resident ID number (GB 11643)
    ORGANISATION = "organisation"  # 法人或其他组织: name + unified social credit code (GB 32100)


@dataclass(frozen=True, slots=True)
class Party:
    id: PartyId
    case_id: CaseId
    kind: PartyKind
    name: str
    identifier: str  # the ID number or credit code, canonical (upper case)


class CaseStatus(StrEnum):
    """Where a case stands in the case-management system; only a case under way may be queried."""

    ACTIVE = "active"  # 执行中
    TERMINATED = "terminated"  # 终结本次执行程序 (终本)
    CLOSED = "closed"  # 结案

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]


_STATUS_LABELS = {CaseStatus.ACTIVE: "执行中", CaseStatus.TERMINATED: "终本", CaseStatus.CLOSED: "结案"}


class CaseSource(StrEnum):
    """Who registered a case (立案): a supervisor or admin by hand, the case-management system, or an import."""

    MANUAL = "manual"
    SYSTEM = "system"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class Case:
    """An enforcement case (执行案件), its parties and the judges assigned to it."""

    id: CaseId
    case_number: str  # 执行案号, e.g. (2026)黑0102执123号
    court_id: CourtId
    title: str
    created_by: UserId | None  # None: registered by the case-management system or an import
    created_ms: int
    parties: tuple[Party, ...] = ()
    judge_ids: tuple[UserId, ...] = ()
    status: CaseStatus = CaseStatus.ACTIVE
    source: CaseSource = CaseSource.MANUAL


@dataclass(frozen=True, slots=True)
class SystemClient:
    """The case-management system's credential (立案系统): bound to a court, stored as its lookup hash."""

    id: SystemClientId
    name: str
    court_id: CourtId
    created_ms: int
    revoked_ms: int | None = None


class ProposalStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # the party is on the case (party_id)
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class PartyProposal:
    """A party proposed for an existing case by hand; on the case only once a supervisor approves."""

    id: ProposalId
    case_id: CaseId
    kind: PartyKind
    name: str
    identifier: str
    reason: str
    proposed_by: UserId
    proposed_ms: int
    status: ProposalStatus
    decided_by: UserId | None = None
    decided_ms: int | None = None
    note: str = ""
    party_id: PartyId | None = None


class JobStatus(StrEnum):
    """One agency's part of a query, as the judge's screen shows it."""

    PENDING = "pending"
    ANSWERED = "answered"  # assets found
    NO_ASSETS = "no_assets"
    FAILED = "failed"  # with why (error)
    TIMED_OUT = "timed_out"  # the query's deadline passed first; a late answer may still replace it


FINAL_JOB_STATUSES = frozenset({JobStatus.ANSWERED, JobStatus.NO_ASSETS, JobStatus.FAILED})


@dataclass(frozen=True, slots=True)
class Query:
    id: QueryId
    case_id: CaseId
    judge_id: UserId
    reason: str
    created_ms: int
    deadline_ms: int
    completed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One request to one agency about one party; ``id`` is the Idempotency-Key the agency sees."""

    id: JobId
    query_id: QueryId
    party_id: PartyId
    agency_id: AgencyId
    status: JobStatus
    attempts: int  # requests sent (each counted before it is sent)
    error: str | None
    created_ms: int
    updated_ms: int
    answered_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AssetDraft:
    kind: str  # deposit, real_estate, vehicle, equity, securities, …
    ref: str  # the agency's reference (account number, certificate number, plate…)
    description: str
    value_cents: int | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How one agency call ended, to be recorded (``QueryStore.finish_jobs``)."""

    job_id: JobId
    status: JobStatus
    at_ms: int
    error: str | None = None
    assets: Sequence[AssetDraft] = ()
    fence: Fence | None = None  # the query's lease grant it is recorded under (None: unfenced)
    #: Among the query's last jobs running: when this outcome is recorded and no job of the query is left pending,
    #: the query completes at ``at_ms`` in the same transaction (one write, not two, before the screen is told).
    completes_query: bool = False


@dataclass(frozen=True, slots=True)
class Asset:
    id: AssetId
    query_id: QueryId
    job_id: JobId
    agency_id: AgencyId
    party_id: PartyId
    kind: str
    ref: str
    description: str
    value_cents: int | None
    details: dict[str, Any]


class FollowUpAction(StrEnum):
    FREEZE = "freeze"  # 冻结
    RENEW = "renew"  # 续冻
    UNFREEZE = "unfreeze"  # 解冻
    DEDUCT = "deduct"  # 扣划


class FollowUpStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # 待二次审批
    REJECTED = "rejected"  # the supervisor said no
    APPROVED = "approved"  # approved, not yet sent
    SENDING = "sending"  # recorded before each send; a restart sends again with the same key
    CONFIRMED = "confirmed"  # the agency confirmed (agency_ref)
    REFUSED = "refused"  # the agency refused (error says why)
    FAILED = "failed"  # could not be delivered (error says why)


@dataclass(frozen=True, slots=True)
class FollowUp:
    id: FollowUpId  # also the Idempotency-Key the agency sees
    asset_id: AssetId
    query_id: QueryId
    case_id: CaseId
    agency_id: AgencyId
    action: FollowUpAction
    amount_cents: int | None
    reason: str
    requested_by: UserId
    requested_ms: int
    status: FollowUpStatus
    attempts: int = 0
    approved_by: UserId | None = None
    decided_ms: int | None = None
    agency_ref: str | None = None
    error: str | None = None
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class AuditDraft:
    action: str  # query.submit, query.view, followup.request, followup.approve, …
    actor_id: UserId | None
    at_ms: int
    reason: str = ""
    case_id: CaseId | None = None
    query_id: QueryId | None = None
    details: dict[str, Any] = field(default_factory=dict)


def submit_audit(query: Query, jobs: Sequence[Job]) -> AuditDraft:
    """The ``query.submit`` entry recorded with a query (``QueryStore.add_query``): who asked, why, on
    which case, and whom the jobs will ask."""
    details = {
        "parties": sorted({j.party_id for j in jobs}),
        "agencies": sorted({j.agency_id for j in jobs}),
        "jobs": len(jobs),
    }
    return AuditDraft("query.submit", query.judge_id, query.created_ms, query.reason, query.case_id, query.id, details)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    action: str
    actor_id: UserId | None
    at_ms: int
    reason: str
    case_id: CaseId | None
    query_id: QueryId | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    #: Why the stored row could not be read as written (details that are not a JSON object); None when fine.
    corrupt: str | None = None

    def content(self) -> dict[str, Any]:
        """What the hash covers (everything but the hashes themselves)."""
        return audit_content(self.seq, self.action, self.actor_id, self.at_ms, self.reason, self.case_id,
                             self.query_id, self.details)  # fmt: skip


def audit_content(
    seq: int,
    action: str,
    actor_id: int | None,
    at_ms: int,
    reason: str,
    case_id: int | None,
    query_id: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    return {"seq": seq, "action": action, "actor_id": actor_id, "at_ms": at_ms, "reason": reason,
            "case_id": case_id, "query_id": query_id, "details": details}  # fmt: skip


def decode_details(raw: object) -> tuple[dict[str, Any], str | None]:
    """An audit row's stored details, or ``({}, why)`` when the row was damaged: verify reports it, never crashes."""
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {}, f"details are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, f"details are not a JSON object (found {type(value).__name__})"
    return value, None


def witness_outcome(checkpoint: Checkpoint, held: Sequence[tuple[int, str]]) -> bool:
    """Whether a lower court's checkpoint is new (True) or held already (False), given the (seq, head) pairs
    the upper centre holds for that court at its seq or later; a fork or a step backwards raises."""
    for seq, head in held:
        if seq == checkpoint.seq and head != checkpoint.head:
            raise CheckpointFork(
                f"court {checkpoint.court}: checkpoint at seq {seq} has head {checkpoint.head}, but head {head} was"
                " witnessed there: its chain was rewritten"
            )
    if any(seq == checkpoint.seq for seq, _ in held):
        return False
    if held:
        newest = max(seq for seq, _ in held)
        raise CheckpointBackwards(
            f"court {checkpoint.court}: checkpoint at seq {checkpoint.seq} is older than the one witnessed at seq"
            f" {newest}: its chain went backwards"
        )
    return True
