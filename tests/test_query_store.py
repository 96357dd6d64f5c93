"""The query part of the store contract (cases, jobs, assets, follow-ups, audit chain), on SQLite and
real PostgreSQL alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from command_center.bootstrap import import_courts
from core.errors import Conflict, NotFound
from core.ids import AgencyId, AssetId, CaseId, CourtId, FollowUpId, JobId, QueryId, UserId
from persistence.models import Role
from persistence.port import Store
from persistence.query_models import (
    AssetDraft,
    AuditDraft,
    FollowUp,
    FollowUpAction,
    FollowUpStatus,
    Job,
    JobOutcome,
    JobStatus,
    PartyKind,
    Query,
    submit_audit,
)
from query_control.audit import verify

COURTS = Path(__file__).resolve().parent.parent / "config" / "courts.toml"
PERSON = "11010519491231002X"
ORG = "91350100M000100Y43"


async def _judge(store: Store, name: str = "zhang", court: str = "HLJ0102") -> UserId:
    user = await store.add_user(
        username=name, display_name=name, password_hash="h", role=Role.JUDGE, court_id=CourtId(court)
    )
    return user.id


async def _case(store: Store) -> tuple[CaseId, UserId]:
    await import_courts(store, COURTS)
    judge = await _judge(store)
    case = await store.add_case(
        case_number="(2026)黑0102执123号",
        court_id=CourtId("HLJ0102"),
        title="张三 借款合同纠纷",
        created_by=judge,
        created_ms=1,
        parties=[(PartyKind.PERSON, "张三", PERSON), (PartyKind.ORGANISATION, "某公司", ORG)],
        judge_ids=[judge, judge],
    )
    return case.id, judge


def _job(query: str, job: str, party: int, agency: str) -> Job:
    return Job(JobId(job), QueryId(query), party, AgencyId(agency), JobStatus.PENDING, 0, None, 1, 1)  # type: ignore[arg-type]


async def test_cases_with_parties_and_judges(store: Store) -> None:
    case_id, judge = await _case(store)
    case = await store.get_case(case_id)
    assert case.case_number == "(2026)黑0102执123号" and case.judge_ids == (judge,)
    assert [(p.kind, p.identifier) for p in case.parties] == [(PartyKind.PERSON, PERSON), (PartyKind.ORGANISATION, ORG)]
    with pytest.raises(Conflict):
        await store.add_party(case_id, PartyKind.PERSON, "又一个张三", PERSON)
    with pytest.raises(Conflict):  # case numbers are unique; nothing of the failed case is kept
        await store.add_case(
            case_number=case.case_number,
            court_id=CourtId("HLJ0102"),
            title="x",
            created_by=judge,
            created_ms=2,
            parties=[(PartyKind.PERSON, "李四", PERSON)],
        )
    other = await _judge(store, "li")
    await store.set_case_judges(case_id, [other])
    assert (await store.get_case(case_id)).judge_ids == (other,)
    assert [c.id for c in await store.list_cases(judge_id=other)] == [case_id]
    assert await store.list_cases(judge_id=judge) == []
    assert [c.id for c in await store.list_cases(court_ids=[CourtId("HLJ0102")])] == [case_id]
    assert await store.list_cases(court_ids=[CourtId("HLJ0103")]) == []
    with pytest.raises(NotFound):
        await store.get_case(CaseId(999))
    with pytest.raises(NotFound):
        await store.set_case_judges(CaseId(999), [other])


async def test_the_last_jobs_outcome_completes_its_query_in_the_same_write(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    query = Query(QueryId("q1"), case_id, judge, "查控", 1, 30_001)
    jobs = [_job("q1", f"j{i}", party, f"bank-{i}") for i in range(3)]
    await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    [first] = await store.finish_jobs([JobOutcome(JobId("j0"), JobStatus.NO_ASSETS, 7)])
    assert first is not None and (await store.get_query(QueryId("q1"))).completed_ms is None
    # an outcome that does not end its job (it had ended) completes nothing; nor one that leaves a job pending
    assert await store.finish_jobs([JobOutcome(JobId("j0"), JobStatus.FAILED, 8, "x", completes_query=True)]) == [None]
    [second] = await store.finish_jobs([JobOutcome(JobId("j1"), JobStatus.NO_ASSETS, 8, completes_query=True)])
    assert second is not None and [q.id for q in await store.running_queries()] == ["q1"]
    assert {j.id: j.status for j in await store.query_jobs(QueryId("q1"))}[JobId("j2")] is JobStatus.PENDING
    [last] = await store.finish_jobs([JobOutcome(JobId("j2"), JobStatus.ANSWERED, 9, completes_query=True)])
    assert isinstance(last, tuple) and last[0].status is JobStatus.ANSWERED
    assert (await store.get_query(QueryId("q1"))).completed_ms == 9 and await store.running_queries() == []
    assert await store.complete_query(QueryId("q1"), 30_001) == []  # the run's own completion changes nothing
    assert (await store.get_query(QueryId("q1"))).completed_ms == 9


async def test_the_last_jobs_ending_together_complete_their_query_once(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    query = Query(QueryId("q1"), case_id, judge, "查控", 1, 30_001)
    jobs = [_job("q1", f"j{i}", party, f"bank-{i}") for i in range(2)]
    await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    ended = await store.finish_jobs(
        [JobOutcome(JobId("j0"), JobStatus.NO_ASSETS, 12, completes_query=True),
         JobOutcome(JobId("j1"), JobStatus.NO_ASSETS, 11, completes_query=True)]
    )  # fmt: skip
    assert None not in ended and (await store.get_query(QueryId("q1"))).completed_ms == 12


async def test_jobs_move_forward_only_and_late_answers_are_kept(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    query = Query(QueryId("q1"), case_id, judge, "查控", 1, 30_001)
    jobs = [_job("q1", f"j{i}", party, f"bank-{i}") for i in range(3)]
    await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    assert [q.id for q in await store.running_queries()] == ["q1"]
    assert await store.start_job_attempts([JobId("j0"), JobId("j1")], 5) == {"j0": 1, "j1": 1}
    assert await store.start_job_attempts([JobId("j0")], 6) == {"j0": 2}
    deposit = AssetDraft("deposit", "6222-0001", "活期存款", 12_345, {"bank": "工行"})
    [done] = await store.finish_jobs([JobOutcome(JobId("j0"), JobStatus.ANSWERED, 7, assets=[deposit, deposit])])
    assert isinstance(done, tuple) and done[0].status is JobStatus.ANSWERED and done[0].answered_ms == 7
    assert [(a.ref, a.job_id) for a in done[1]] == [("6222-0001", "j0")]  # the job's assets, once, with ids
    # one transaction, answered in order: an ended job is None beside a job that ends now
    again, failed = await store.finish_jobs(
        [JobOutcome(JobId("j0"), JobStatus.FAILED, 8, "x"), JobOutcome(JobId("j1"), JobStatus.FAILED, 8, "HTTP 400")]
    )
    assert again is None
    assert isinstance(failed, tuple) and failed[0].error == "HTTP 400" and failed[1] == []
    assert await store.start_job_attempts([JobId("j0"), JobId("j1")], 9) == {}  # not pending: nothing may be sent
    with pytest.raises(ValueError, match="only once"):
        await store.finish_jobs([JobOutcome(JobId("j2"), JobStatus.NO_ASSETS, 9)] * 2)

    timed_out = await store.complete_query(QueryId("q1"), 30_001)
    assert [j.id for j in timed_out] == ["j2"] and timed_out[0].status is JobStatus.TIMED_OUT
    assert await store.complete_query(QueryId("q1"), 30_002) == []
    assert (await store.get_query(QueryId("q1"))).completed_ms == 30_001
    assert await store.running_queries() == []
    assert await store.finish_jobs([JobOutcome(JobId("j2"), JobStatus.FAILED, 31_000, "late failure")]) == [None]
    [late] = await store.finish_jobs([JobOutcome(JobId("j2"), JobStatus.NO_ASSETS, 31_000)])
    assert isinstance(late, tuple) and late[0].status is JobStatus.NO_ASSETS
    statuses = {j.id: j.status for j in await store.query_jobs(QueryId("q1"))}
    assert statuses == {"j0": JobStatus.ANSWERED, "j1": JobStatus.FAILED, "j2": JobStatus.NO_ASSETS}
    assets = await store.query_assets(QueryId("q1"))
    assert [(a.ref, a.value_cents, a.details) for a in assets] == [("6222-0001", 12_345, {"bank": "工行"})]
    assert await store.get_asset(assets[0].id) == assets[0]
    with pytest.raises(Conflict):
        await store.add_query(query, [], audit=submit_audit(query, []))
    assert [q.id for q in await store.list_queries(case_id=case_id)] == ["q1"]


async def test_followups_are_compare_and_set(store: Store) -> None:
    case_id, judge = await _case(store)
    party = (await store.get_case(case_id)).parties[0].id
    query = Query(QueryId("q1"), case_id, judge, "r", 1, 2)
    jobs = [_job("q1", "j0", party, "bank-0")]
    await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    await store.finish_jobs(
        [JobOutcome(JobId("j0"), JobStatus.ANSWERED, 3, assets=[AssetDraft("deposit", "A1", "d", 100)])]
    )
    asset = (await store.query_assets(QueryId("q1")))[0]
    followup = FollowUp(
        FollowUpId("f1"),
        asset.id,
        QueryId("q1"),
        case_id,
        AgencyId("bank-0"),
        FollowUpAction.FREEZE,
        100,
        "冻结",
        judge,
        10,
        FollowUpStatus.AWAITING_APPROVAL,
    )
    assert (await store.add_followup(followup)).status is FollowUpStatus.AWAITING_APPROVAL
    with pytest.raises(Conflict):
        await store.add_followup(followup)
    with pytest.raises(NotFound):
        await store.add_followup(
            FollowUp(
                FollowUpId("f2"),
                AssetId(999),
                QueryId("q1"),
                case_id,
                AgencyId("b"),
                FollowUpAction.FREEZE,
                None,
                "r",
                judge,
                1,
                FollowUpStatus.APPROVED,
            )
        )
    supervisor = await _judge(store, "wang")
    approved = await store.update_followup(
        FollowUpId("f1"),
        expect=[FollowUpStatus.AWAITING_APPROVAL],
        status=FollowUpStatus.APPROVED,
        at_ms=11,
        approved_by=supervisor,
    )
    assert approved is not None and approved.approved_by == supervisor and approved.decided_ms == 11
    again = await store.update_followup(
        FollowUpId("f1"), expect=[FollowUpStatus.AWAITING_APPROVAL], status=FollowUpStatus.REJECTED, at_ms=12
    )
    assert again is None
    sending = await store.update_followup(
        FollowUpId("f1"),
        expect=[FollowUpStatus.APPROVED, FollowUpStatus.SENDING],
        status=FollowUpStatus.SENDING,
        at_ms=13,
        count_attempt=True,
    )
    assert sending is not None and sending.attempts == 1 and sending.decided_ms == 11
    confirmed = await store.update_followup(
        FollowUpId("f1"), expect=[FollowUpStatus.SENDING], status=FollowUpStatus.CONFIRMED, at_ms=14, agency_ref="FRZ-1"
    )
    assert confirmed is not None and confirmed.agency_ref == "FRZ-1" and confirmed.approved_by == supervisor
    assert [f.id for f in await store.list_followups(query_id=QueryId("q1"))] == ["f1"]
    assert await store.list_followups(statuses=[FollowUpStatus.SENDING]) == []
    assert [f.id for f in await store.list_followups(case_ids=[case_id])] == ["f1"]
    assert await store.list_followups(case_ids=[]) == []


async def test_audit_chain_is_contiguous_under_concurrency_and_detects_tampering(store: Store) -> None:
    drafts = [AuditDraft("query.view", None, i, reason=f"看 {i}", details={"n": i, "名": "张三"}) for i in range(40)]
    entries = await asyncio.gather(*(store.append_audit(d) for d in drafts))
    assert sorted(e.seq for e in entries) == list(range(1, 41))
    result = await verify(store, page=7)
    assert result.ok and result.entries == 40
    assert result.head == (await store.audit_entries(after_seq=39))[0].hash

    await store.database.execute("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 17")  # type: ignore[attr-defined]
    broken = await verify(store, page=7)
    assert not broken.ok and broken.bad_seq == 17 and "altered" in (broken.problem or "")
