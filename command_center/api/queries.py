"""Point-to-point asset queries (点对点查控): cases and parties, queries, results, follow-ups, agencies.

Only a judge assigned to a case may query its parties; every query, view of results and follow-up is
written to the hash-chained audit log with the judge, the case and the reason. Answers stream to the
judge's screen on topic ``query:<id>`` (docs/protocols.md).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from command_center.api.case_source import PartyProposalIn, PartyProposalOut
from command_center.api.params import whole_number
from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import BigInt, RowId, Strict
from command_center.auth import PEOPLE, Access, current_user
from command_center.keys import AGENCIES, AUDIT, BROKER, BUS, FOLLOWUPS, GATEWAY, STORE
from command_center.query_guard import bind_query, claim_query, release_query, request_key, watch_query
from core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, TooManyRequests, ValidationFailed
from core.ids import AssetId, CaseId, CourtId, FollowUpId, QueryId, UserId
from courts.visibility import require_visible, visible_courts
from persistence.models import Role
from persistence.query_models import Case, CaseSource, CaseStatus, FollowUpAction, FollowUpStatus, PartyKind, Query
from query_control.agencies import AgencyKind
from query_control.case_access import require_on_case
from query_control.case_source import revoke_screens
from query_control.cases import InvalidCaseNumber, InvalidIdentifier, validate_case_number, validate_party_identifier
from query_control.followups import followup_view
from query_control.guard import check_idempotency_key, followup_id_for
from query_control.party_proposals import PartyProposals
from query_control.views import load_query_view

api = Registry()

J, S, A = Access.JUDGE, Access.SUPERVISOR, Access.ADMIN
CASE_PEOPLE = frozenset({J, S, A})

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]


# schemas --------------------------------------------------------------------------------------------
class PartyIn(Strict):
    kind: PartyKind
    name: Text
    identifier: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)] = Field(
        description="resident ID number (GB 11643) for a person, unified social credit code (GB 32100) otherwise"
    )


class CaseIn(Strict):
    case_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    court_id: str | None = Field(None, description="default: the caller's court")
    title: Text
    parties: list[PartyIn] = Field(default_factory=list, max_length=200)
    judge_ids: list[RowId] = Field(default_factory=list, max_length=50, description="judges assigned to the case")


class JudgesIn(Strict):
    judge_ids: list[RowId] = Field(max_length=50)


class PartyOut(BaseModel):
    id: int
    kind: PartyKind
    name: str
    identifier: str


class CaseOut(BaseModel):
    id: int
    case_number: str
    court_id: str
    title: str
    created_by: int | None = Field(description="null: registered by the case-management system or an import")
    created_ms: int
    parties: list[PartyOut]
    judge_ids: list[int]
    status: CaseStatus = Field(description="active (执行中), terminated (终本), closed (结案): only active is queried")
    status_label: str
    source: CaseSource

    @classmethod
    def of(cls, case: Case) -> CaseOut:
        return cls(
            id=case.id,
            case_number=case.case_number,
            court_id=case.court_id,
            title=case.title,
            created_by=case.created_by,
            created_ms=case.created_ms,
            parties=[PartyOut(id=p.id, kind=p.kind, name=p.name, identifier=p.identifier) for p in case.parties],
            judge_ids=list(case.judge_ids),
            status=case.status,
            status_label=case.status.label,
            source=case.source,
        )


class CaseList(BaseModel):
    cases: list[CaseOut]


class QueryIn(Strict):
    case_id: RowId
    reason: Reason = Field(description="why the judge queries (recorded in the audit log)")
    party_ids: list[RowId] | None = Field(None, max_length=200, description="null: every party of the case")
    agency_ids: list[str] | None = Field(None, max_length=100, description="null: every agency")
    asset_kinds: list[AgencyKind] | None = Field(None, description="agency kinds; null: all")


class QueryOut(BaseModel):
    id: str
    case_id: int
    case_number: str
    judge_id: int
    reason: str
    created_ms: int
    deadline_ms: int
    completed_ms: int | None
    complete: bool
    jobs: list[dict[str, Any]]


class QuerySummary(BaseModel):
    id: str
    case_id: int
    judge_id: int
    reason: str
    created_ms: int
    deadline_ms: int
    completed_ms: int | None


class QueryList(BaseModel):
    queries: list[QuerySummary]


class FollowUpIn(Strict):
    asset_id: RowId
    action: FollowUpAction
    amount_cents: BigInt | None = Field(None, gt=0, description="required for deduct; optional cap for freeze")
    reason: Reason


class DecisionIn(Strict):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class FollowUpOut(BaseModel):
    id: str
    asset_id: int
    query_id: str
    case_id: int
    agency_id: str
    action: str
    amount_cents: int | None
    reason: str
    requested_by: int
    requested_ms: int
    status: str
    attempts: int
    approved_by: int | None
    decided_ms: int | None
    agency_ref: str | None
    error: str | None
    updated_ms: int


class FollowUpList(BaseModel):
    followups: list[FollowUpOut]


class AgencyOut(BaseModel):
    id: str
    name: str
    kind: str
    party_kinds: list[str]
    followups: list[str]
    circuit: Literal["closed", "open", "half_open"]


class AgencyList(BaseModel):
    agencies: list[AgencyOut]


# helpers --------------------------------------------------------------------------------------------
def _int_id(raw: str, what: str) -> int:
    value = whole_number(raw)
    if value is None:
        raise NotFound(f"{what} {raw} does not exist")
    return value


async def _case_for(request: web.Request, case_id: int, *, write: bool = False) -> Case:
    """The case, if the caller may see it: its judges; supervisors (and admins) of its court or above."""
    store = request.app[STORE]
    case = await store.get_case(CaseId(case_id))
    caller = current_user(request)
    if caller.access is Access.JUDGE:
        require_on_case(case, caller.user.id)
    else:
        try:
            await require_visible(store, caller, case.court_id)
        except Forbidden:  # not even which court holds it
            raise Forbidden("this case is outside your jurisdiction") from None
    return case


def _parties(parties: list[PartyIn]) -> list[tuple[PartyKind, str, str]]:
    out = []
    for index, party in enumerate(parties):
        try:
            out.append((party.kind, party.name, validate_party_identifier(party.kind, party.identifier)))
        except InvalidIdentifier as exc:
            raise ValidationFailed(
                f"parties.{index}.identifier: {exc}",
                details=[{"field": f"parties.{index}.identifier", "problem": str(exc)}],
            ) from None
    return out


async def _check_judges(request: web.Request, court_id: CourtId, judge_ids: list[int]) -> list[UserId]:
    store = request.app[STORE]
    checked: list[UserId] = []
    for judge_id in dict.fromkeys(judge_ids):
        try:
            user = await store.get_user(UserId(judge_id))
        except NotFound:
            user = None  # told like another court's user: nothing is learnt of who exists where
        if user is None or user.role is not Role.JUDGE or user.court_id != court_id:
            raise ValidationFailed(f"judge_ids: user {judge_id} is not a judge of court {court_id}")
        checked.append(user.id)
    return checked


# cases ----------------------------------------------------------------------------------------------
@api.route(
    "POST",
    "/api/cases",
    summary="Register a case by hand (supervisor or admin; judges get their cases from the case source)",
    tag="queries",
    access=frozenset({S, A}),
    body=CaseIn,
    response=CaseOut,
    status=201,
    errors=(NotFound, Conflict),
)
async def add_case(request: web.Request) -> web.StreamResponse:
    data = body(request, CaseIn)
    caller = current_user(request)
    store = request.app[STORE]
    try:
        number = validate_case_number(data.case_number)
    except InvalidCaseNumber as exc:
        raise ValidationFailed(f"case_number: {exc}") from None
    court_id = CourtId(data.court_id or caller.court_id)
    await store.get_court(court_id)
    # jurisdiction first: checking judges of a court the caller may not see would tell (403 or 422) who the
    # judges of any court are
    await require_visible(store, caller, court_id)
    judges = await _check_judges(request, court_id, data.judge_ids)
    case = await store.add_case(
        case_number=number,
        court_id=court_id,
        title=data.title,
        created_by=caller.user.id,
        created_ms=_now_ms(),
        parties=_parties(data.parties),
        judge_ids=judges,
    )
    await request.app[AUDIT].record(
        "case.create", caller.user.id, case_id=case.id, details={"case_number": number, "parties": len(case.parties)}
    )
    return json_response(CaseOut.of(case), status=201)


@api.route(
    "GET",
    "/api/cases",
    summary="Cases the caller may see (a judge: those assigned to them)",
    tag="queries",
    access=CASE_PEOPLE,
    response=CaseList,
)
async def list_cases(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    if caller.access is Access.JUDGE:
        cases = await store.list_cases(judge_id=caller.user.id)
    else:
        cases = await store.list_cases(court_ids=await visible_courts(store, caller))
    return json_response(CaseList(cases=[CaseOut.of(c) for c in cases]))


@api.route(
    "GET",
    "/api/cases/{case_id}",
    summary="One case with its parties",
    tag="queries",
    access=CASE_PEOPLE,
    response=CaseOut,
    errors=(NotFound,),
)
async def get_case(request: web.Request) -> web.StreamResponse:
    case = await _case_for(request, _int_id(request.match_info["case_id"], "case"))
    return json_response(CaseOut.of(case))


@api.route(
    "PUT",
    "/api/cases/{case_id}/judges",
    summary="Assign the judges of a case",
    tag="queries",
    access=frozenset({S, A}),
    body=JudgesIn,
    response=CaseOut,
    errors=(NotFound,),
)
async def set_judges(request: web.Request) -> web.StreamResponse:
    data = body(request, JudgesIn)
    case = await _case_for(request, _int_id(request.match_info["case_id"], "case"))
    judges = await _check_judges(request, case.court_id, data.judge_ids)
    store = request.app[STORE]
    await store.set_case_judges(case.id, judges)
    await revoke_screens(store, request.app[BUS], case.id, [j for j in case.judge_ids if j not in judges])
    await request.app[AUDIT].record(
        "case.judges", current_user(request).user.id, case_id=case.id, details={"judge_ids": list(judges)}
    )
    return json_response(CaseOut.of(await store.get_case(case.id)))


@api.route(
    "POST",
    "/api/cases/{case_id}/parties",
    summary="Propose a party for a case (the judge on it or a supervisor); on the case once another "
    "supervisor approves it (POST /api/party-proposals/{proposal_id}/approve)",
    tag="queries",
    access=frozenset({J, S}),
    body=PartyProposalIn,
    response=PartyProposalOut,
    status=202,
    errors=(NotFound, Conflict),
)
async def add_party(request: web.Request) -> web.StreamResponse:
    data = body(request, PartyProposalIn)
    case = await _case_for(request, _int_id(request.match_info["case_id"], "case"))
    try:
        identifier = validate_party_identifier(data.kind, data.identifier)
    except InvalidIdentifier as exc:
        raise ValidationFailed(f"identifier: {exc}", details=[{"field": "identifier", "problem": str(exc)}]) from None
    proposal = await PartyProposals(request.app[STORE], request.app[AUDIT]).propose(
        current_user(request).user, case, data.kind, data.name, identifier, data.reason
    )
    return json_response(PartyProposalOut.of(proposal), status=202)


# queries --------------------------------------------------------------------------------------------
@api.route(
    "POST",
    "/api/queries",
    summary="Query parties' assets at agencies (judge assigned to the case); an Idempotency-Key header makes a "
    "double click one query (202 when made, 200 with the same query when the key was used before)",
    tag="queries",
    access=frozenset({J}),
    body=QueryIn,
    response=QueryOut,
    status=202,
    errors=(NotFound, Conflict, TooManyRequests, ServiceUnavailable),
)
async def submit_query(request: web.Request) -> web.StreamResponse:
    data = body(request, QueryIn)
    key = check_idempotency_key(request.headers.get("Idempotency-Key")) or request_key()
    caller = current_user(request)
    case = await _case_for(request, data.case_id)
    store = request.app[STORE]
    earlier = await claim_query(request.app, caller.user, key, data.model_dump(mode="json"))
    if earlier is not None:  # the same request again (a double click, a retry): the query it made
        view = await load_query_view(store, earlier, _names(request))
        await _audit_view(request, view, replay=True)
        return json_response(QueryOut.model_validate(view), status=200)
    try:
        query, _ = await request.app[BROKER].submit(
            case,
            caller.user.id,
            data.reason,
            party_ids=data.party_ids,
            agency_ids=data.agency_ids,
            kinds=None if data.asset_kinds is None else [k.value for k in data.asset_kinds],
        )
    except BaseException:
        await release_query(request.app, caller.user, key)
        raise
    await bind_query(request.app, caller.user, key, query.id)  # its audit entry went in with it
    await watch_query(request.app, caller.user, query.id)
    view = await load_query_view(store, query.id, _names(request))
    return json_response(QueryOut.model_validate(view), status=202)


@api.route(
    "GET",
    "/api/queries",
    summary="Queries: a judge's own; a supervisor's courts' (?case_id=)",
    tag="queries",
    access=frozenset({J, S}),
    response=QueryList,
)
async def list_queries(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    raw_case = request.query.get("case_id")
    case_id = CaseId(_int_id(raw_case, "case")) if raw_case else None
    if caller.access is Access.JUDGE:  # a judge taken off a case no longer sees its queries
        on = {c.id for c in await store.list_cases(judge_id=caller.user.id)}
        queries = [q for q in await store.list_queries(case_id=case_id, judge_id=caller.user.id) if q.case_id in on]
    else:
        courts = await visible_courts(store, caller)
        cases = {c.id for c in await store.list_cases(court_ids=courts)}
        queries = [q for q in await store.list_queries(case_id=case_id) if q.case_id in cases]
    return json_response(QueryList(queries=[_summary(q) for q in queries]))


@api.route(
    "GET",
    "/api/queries/{query_id}",
    summary="A query's results with every agency's status (audited)",
    tag="queries",
    access=frozenset({J, S}),
    response=QueryOut,
    errors=(NotFound,),
)
async def get_query(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    query = await store.get_query(QueryId(request.match_info["query_id"]))
    await _case_for(request, query.case_id)  # judges on the case (its querying judge too, while on it)
    view = await load_query_view(store, query.id, _names(request))
    await _audit_view(request, view)
    return json_response(QueryOut.model_validate(view))


async def _audit_view(request: web.Request, view: dict[str, Any], *, replay: bool = False) -> None:
    """Every read of a query's results is in the audit chain: who, which query, how many assets they saw."""
    details: dict[str, Any] = {"assets": sum(len(j["assets"]) for j in view["jobs"])}
    if replay:
        details["idempotent_replay"] = True
    await request.app[AUDIT].record(
        "query.view",
        current_user(request).user.id,
        reason=request.query.get("reason", ""),
        case_id=view["case_id"],
        query_id=view["id"],
        details=details,
    )


# follow-ups -----------------------------------------------------------------------------------------
@api.route(
    "POST",
    "/api/followups",
    summary="Ask to freeze, renew, unfreeze or deduct an asset found by a query "
    "(awaits a supervisor's approval; Idempotency-Key header makes a retried request safe)",
    tag="queries",
    access=frozenset({J}),
    body=FollowUpIn,
    response=FollowUpOut,
    status=201,
    errors=(NotFound, Conflict),
)
async def request_followup(request: web.Request) -> web.StreamResponse:
    data = body(request, FollowUpIn)
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    followup, created = await request.app[FOLLOWUPS].request(
        current_user(request).user,
        asset_id=AssetId(data.asset_id),
        action=data.action,
        amount_cents=data.amount_cents,
        reason=data.reason,
        key=None if key is None else followup_id_for(key, current_user(request).user.id),
    )
    return json_response(FollowUpOut.model_validate(followup_view(followup)), status=201 if created else 200)


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    data = body(request, DecisionIn)
    followup = await request.app[FOLLOWUPS].decide(
        current_user(request).user, FollowUpId(request.match_info["followup_id"]), approve=approve, note=data.note
    )
    return json_response(FollowUpOut.model_validate(followup_view(followup)))


@api.route(
    "POST",
    "/api/followups/{followup_id}/approve",
    summary="Second approval (二次审批): send the follow-up",
    tag="queries",
    access=frozenset({S}),
    body=DecisionIn,
    response=FollowUpOut,
    errors=(NotFound, Conflict),
)
async def approve_followup(request: web.Request) -> web.StreamResponse:
    return await _decide(request, True)


@api.route(
    "POST",
    "/api/followups/{followup_id}/reject",
    summary="Refuse a follow-up",
    tag="queries",
    access=frozenset({S}),
    body=DecisionIn,
    response=FollowUpOut,
    errors=(NotFound, Conflict),
)
async def reject_followup(request: web.Request) -> web.StreamResponse:
    return await _decide(request, False)


@api.route(
    "GET",
    "/api/followups",
    summary="Follow-ups (?query_id=, ?status=): a judge's cases, a supervisor's courts",
    tag="queries",
    access=frozenset({J, S}),
    response=FollowUpList,
)
async def list_followups(request: web.Request) -> web.StreamResponse:
    caller = current_user(request)
    store = request.app[STORE]
    if caller.access is Access.JUDGE:
        cases = await store.list_cases(judge_id=caller.user.id)
    else:
        cases = await store.list_cases(court_ids=await visible_courts(store, caller))
    status = request.query.get("status")
    try:
        statuses = None if status is None else [FollowUpStatus(status)]
    except ValueError:
        raise ValidationFailed(f"status: one of {[s.value for s in FollowUpStatus]}") from None
    raw_query = request.query.get("query_id")
    followups = await store.list_followups(
        query_id=QueryId(raw_query) if raw_query else None, case_ids=[c.id for c in cases], statuses=statuses
    )
    await request.app[AUDIT].record(
        "followup.list",
        caller.user.id,
        query_id=QueryId(raw_query) if raw_query else None,
        details={"followups": [f.id for f in followups], "status": status},
    )  # follow-ups carry what was found (asset, amount): reading them is audited like the results
    return json_response(FollowUpList(followups=[FollowUpOut.model_validate(followup_view(f)) for f in followups]))


# agencies -------------------------------------------------------------------------------------------
@api.route(
    "GET",
    "/api/agencies",
    summary="Partner agencies and their circuit state",
    tag="queries",
    access=PEOPLE,
    response=AgencyList,
)
async def list_agencies(request: web.Request) -> web.StreamResponse:
    circuits = request.app[GATEWAY].breaker_states()
    return json_response(
        AgencyList(
            agencies=[
                AgencyOut(
                    id=a.id,
                    name=a.name,
                    kind=a.kind.value,
                    party_kinds=[k.value for k in a.party_kinds],
                    followups=[f.value for f in a.followups],
                    circuit=circuits[a.id],
                )
                for a in request.app[AGENCIES]
            ]
        )
    )


def _names(request: web.Request) -> dict[str, str]:
    return {a.id: a.name for a in request.app[AGENCIES]}


def _summary(q: Query) -> QuerySummary:
    return QuerySummary(
        id=q.id,
        case_id=q.case_id,
        judge_id=q.judge_id,
        reason=q.reason,
        created_ms=q.created_ms,
        deadline_ms=q.deadline_ms,
        completed_ms=q.completed_ms,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
