"""The case source (立案): the case-management system's credentials, its integration route, and parties
proposed by hand awaiting a supervisor's approval.

Cases and their parties come from the court's case registration, not from the judge who queries: the
system client upserts cases of its court (or a court below) with their judges, an administrator keeps its
credentials, and a party added by hand is on the case only once a second person approves it.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints, field_validator

from command_center.api.params import whole_number
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import Strict
from command_center.auth import Access, UserCaller, current_system, current_user
from command_center.credentials import lookup_hash, new_system_secret
from command_center.keys import AUDIT, BUS, STORE
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, CourtId, ProposalId, SystemClientId, UserId
from courts.visibility import visible_courts
from persistence.port import Store
from persistence.query_models import (
    Case,
    CaseSource,
    CaseStatus,
    PartyKind,
    PartyProposal,
    ProposalStatus,
    SystemClient,
)
from query_control.audit import AuditLog
from query_control.broker import now_ms
from query_control.case_source import CaseRecord, CaseSourceDesk
from query_control.party_proposals import PartyProposals

api = Registry()

ADMIN = frozenset({Access.ADMIN})
SYSTEM = frozenset({Access.SYSTEM})
J, S = Access.JUDGE, Access.SUPERVISOR

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
_LABELS = {s.label: s.value for s in CaseStatus}


# schemas --------------------------------------------------------------------------------------------
class SystemClientIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    court_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class SystemClientOut(BaseModel):
    id: int
    name: str
    court_id: str
    created_ms: int
    revoked_ms: int | None

    @classmethod
    def of(cls, c: SystemClient) -> SystemClientOut:
        return cls(id=c.id, name=c.name, court_id=c.court_id, created_ms=c.created_ms, revoked_ms=c.revoked_ms)


class SystemClientCreated(BaseModel):
    client: SystemClientOut
    secret: str = Field(description="shown once; send as 'Authorization: Bearer <secret>'")


class SystemClientList(BaseModel):
    clients: list[SystemClientOut]


class SyncParty(Strict):
    kind: PartyKind
    name: Text
    identifier: Identifier = Field(
        description="resident ID number (GB 11643) for a person, unified social credit code (GB 32100) otherwise"
    )


class CaseSync(Strict):
    """A case as the case-management system registers it (also one row of ``case import``)."""

    case_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    court_id: str | None = Field(None, description="default: the system client's court (a court below it allowed)")
    title: Text
    status: CaseStatus = Field(CaseStatus.ACTIVE, description="active (执行中), terminated (终本), closed (结案)")
    parties: list[SyncParty] = Field(default_factory=list, max_length=200)
    judges: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=50, description="usernames of the judges assigned to the case"
    )

    @field_validator("status", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        return _LABELS.get(value, value) if isinstance(value, str) else value

    def record(self, default_court: CourtId | None) -> CaseRecord:
        court = self.court_id or default_court
        if not court:
            raise ValidationFailed("court_id: required")
        return CaseRecord(
            case_number=self.case_number,
            court_id=CourtId(court),
            title=self.title,
            status=self.status,
            parties=[(p.kind, p.name, p.identifier) for p in self.parties],
            judges=list(self.judges),
        )


class CaseSynced(BaseModel):
    outcome: str = Field(description="created, updated or unchanged")
    case_id: int
    case_number: str
    court_id: str
    status: str
    changes: dict[str, Any]


class PartyProposalIn(SyncParty):
    reason: Reason = Field(description="why this party belongs on the case (audited)")


class PartyProposalOut(BaseModel):
    id: int
    case_id: int
    kind: PartyKind
    name: str
    identifier: str
    reason: str
    proposed_by: int
    proposed_ms: int
    status: ProposalStatus
    decided_by: int | None
    decided_ms: int | None
    note: str
    party_id: int | None

    @classmethod
    def of(cls, p: PartyProposal) -> PartyProposalOut:
        return cls(
            id=p.id, case_id=p.case_id, kind=p.kind, name=p.name, identifier=p.identifier, reason=p.reason,
            proposed_by=p.proposed_by, proposed_ms=p.proposed_ms, status=p.status, decided_by=p.decided_by,
            decided_ms=p.decided_ms, note=p.note, party_id=p.party_id,
        )  # fmt: skip


class PartyProposalList(BaseModel):
    proposals: list[PartyProposalOut]


class ProposalDecisionIn(Strict):
    reason: Reason


def _row_id(raw: str, what: str) -> int:
    value = whole_number(raw)
    if value is None:
        raise NotFound(f"{what} {raw} does not exist")
    return value


# system clients -------------------------------------------------------------------------------------
@api.route(
    "POST",
    "/api/system-clients",
    summary="Register the case-management system of a court; its secret is shown once",
    tag="case source",
    access=ADMIN,
    body=SystemClientIn,
    response=SystemClientCreated,
    status=201,
    errors=(NotFound, Conflict),
)
async def add_system_client(request: web.Request) -> web.StreamResponse:
    data = body(request, SystemClientIn)
    client, secret = await register_system_client(
        request.app[STORE], request.app[AUDIT], data.name, CourtId(data.court_id), current_user(request).user.id
    )
    return json_response(SystemClientCreated(client=SystemClientOut.of(client), secret=secret), status=201)


@api.route(
    "GET",
    "/api/system-clients",
    summary="The case-management systems' credentials (never their secrets)",
    tag="case source",
    access=ADMIN,
    response=SystemClientList,
)
async def list_system_clients(request: web.Request) -> web.StreamResponse:
    clients = await request.app[STORE].list_system_clients()
    return json_response(SystemClientList(clients=[SystemClientOut.of(c) for c in clients]))


@api.route(
    "POST",
    "/api/system-clients/{client_id}/revoke",
    summary="Revoke a case-management system's credential",
    tag="case source",
    access=ADMIN,
    response=SystemClientOut,
    errors=(NotFound,),
)
async def revoke_system_client(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    client = await store.get_system_client(SystemClientId(_row_id(request.match_info["client_id"], "system client")))
    revoked = await revoke_client(store, request.app[AUDIT], client, current_user(request).user.id)
    return json_response(SystemClientOut.of(revoked))


async def register_system_client(
    store: Store, audit: AuditLog, name: str, court_id: CourtId, actor: UserId | None
) -> tuple[SystemClient, str]:
    """Create the credential (its secret returned once, only its hash kept) and audit it; ``actor`` None:
    from the shell."""
    await store.get_court(court_id)
    secret = new_system_secret()
    client = await store.add_system_client(
        name=name, court_id=court_id, secret_hash=lookup_hash(secret), created_ms=now_ms()
    )
    await audit.record("system_client.create", actor, details=_client_details(client, actor))
    return client, secret


async def revoke_client(store: Store, audit: AuditLog, client: SystemClient, actor: UserId | None) -> SystemClient:
    """Revoke (audited once: revoking again changes nothing)."""
    if client.revoked_ms is not None:
        return client
    revoked = await store.revoke_system_client(client.id, now_ms())
    await audit.record("system_client.revoke", actor, details=_client_details(client, actor))
    return revoked


def _client_details(client: SystemClient, actor: UserId | None) -> dict[str, Any]:
    details: dict[str, Any] = {"client_id": client.id, "name": client.name, "court_id": client.court_id}
    return details if actor is not None else {**details, "via": "cli"}


async def reachable_cases(store: Store, caller: UserCaller) -> list[Case]:
    """The cases a person reaches: a judge those assigned to them now, others those of their courts."""
    if caller.access is Access.JUDGE:
        return await store.list_cases(judge_id=caller.user.id)
    return await store.list_cases(court_ids=await visible_courts(store, caller))


# the integration route ------------------------------------------------------------------------------
@api.route(
    "POST",
    "/api/integration/cases",
    summary="Case-management system: create or bring up to date a case by its number (idempotent)",
    tag="case source",
    access=SYSTEM,
    body=CaseSync,
    response=CaseSynced,
    errors=(Conflict,),
)
async def sync_case(request: web.Request) -> web.StreamResponse:
    data = body(request, CaseSync)
    client = current_system(request).client
    done = await CaseSourceDesk(request.app[STORE], request.app[AUDIT], request.app[BUS]).upsert(
        data.record(client.court_id),
        source=CaseSource.SYSTEM,
        within=client.court_id,
        audit_details={"system_client": client.id, "client_name": client.name},
    )
    out = CaseSynced(
        outcome=done.outcome,
        case_id=done.case.id,
        case_number=done.case.case_number,
        court_id=done.case.court_id,
        status=done.case.status.value,
        changes=done.changes,
    )
    return json_response(out, status=201 if done.outcome == "created" else 200)


# party proposals ------------------------------------------------------------------------------------
@api.route(
    "GET",
    "/api/party-proposals",
    summary="Parties proposed by hand (?case_id=, ?status=): a judge's cases, a supervisor's courts",
    tag="queries",
    access=frozenset({J, S}),
    response=PartyProposalList,
)
async def list_party_proposals(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    case_ids = [c.id for c in await reachable_cases(store, current_user(request))]
    raw_case = request.query.get("case_id")
    if raw_case:
        wanted = CaseId(_row_id(raw_case, "case"))
        case_ids = [c for c in case_ids if c == wanted]
    status = request.query.get("status")
    try:
        statuses = None if status is None else [ProposalStatus(status)]
    except ValueError:
        raise ValidationFailed(f"status: one of {[s.value for s in ProposalStatus]}") from None
    proposals = await store.list_party_proposals(case_ids=case_ids, statuses=statuses)
    return json_response(PartyProposalList(proposals=[PartyProposalOut.of(p) for p in proposals]))


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    data = body(request, ProposalDecisionIn)
    proposal_id = ProposalId(_row_id(request.match_info["proposal_id"], "party proposal"))
    decided = await PartyProposals(request.app[STORE], request.app[AUDIT]).decide(
        current_user(request).user, proposal_id, approve=approve, reason=data.reason
    )
    return json_response(PartyProposalOut.of(decided))


@api.route(
    "POST",
    "/api/party-proposals/{proposal_id}/approve",
    summary="Second approval: the proposed party joins the case (a supervisor other than the proposer)",
    tag="queries",
    access=frozenset({S}),
    body=ProposalDecisionIn,
    response=PartyProposalOut,
    errors=(NotFound, Conflict, Forbidden),
)
async def approve_party(request: web.Request) -> web.StreamResponse:
    return await _decide(request, True)


@api.route(
    "POST",
    "/api/party-proposals/{proposal_id}/reject",
    summary="Refuse a proposed party, with the reason",
    tag="queries",
    access=frozenset({S}),
    body=ProposalDecisionIn,
    response=PartyProposalOut,
    errors=(NotFound, Conflict, Forbidden),
)
async def reject_party(request: web.Request) -> web.StreamResponse:
    return await _decide(request, False)
