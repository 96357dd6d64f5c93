"""The query broker: fans a query out to every selected agency at once and gathers the answers by its
deadline, durably.

Per job (one party at one agency): per-agency concurrency limit (a semaphore), circuit breaker, per-attempt
timeout, bounded retries with full-jitter backoff for transient errors, and the job id as Idempotency-Key.
Jobs are persisted before anything is sent and every attempt is counted before it goes out, so a restart
resumes what was pending (``resume_pending``) and an agency that did answer replays its answer instead of
acting twice. The query completes when its last job ends, in the transaction that records that job's outcome
(so the screen learns it one write sooner; the task that published that job's state announces it at once), or
at the deadline: jobs still pending are marked timed out; an attempt in flight may still answer (within its
agency's timeout), and that late answer is stored and streamed.
Every change of a job is published on the bus topic ``query.<id>`` for the judge's screen.

With several server processes a query runs in one of them: the one holding its lease ``query:<id>``. A
process that dies loses its leases, and ``resume_pending`` (run periodically by every process) lets
another take the query over, so its deadline is still kept. Every job write carries the epoch of the run's
lease grant (``core.fencing``): a process that was only paused past its lease is refused at its next write
(FencedOut) and stops, before asking an agency again (docs/scale-out.md, "Fencing").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cluster.port import Coordinator, fence_of
from core import log_context
from core.errors import FencedOut, ValidationFailed
from core.fencing import Fence
from core.group_commit import GroupCommit
from core.ids import AgencyId, JobId, PartyId, QueryId, UserId
from event_bus.port import EventBus
from persistence.query_models import Asset, Case, Job, JobOutcome, JobStatus, Party, Query, submit_audit
from persistence.query_port import QueryStore
from query_control.adapters.port import AgencyThrottled, PermanentAgencyError, Subject, TransientAgencyError
from query_control.agencies import AgencyConfig
from query_control.breaker import backoff_delay, may_retry
from query_control.case_access import require_under_way
from query_control.gateway import AgencyGateway
from query_control.views import job_view, query_topic

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


def query_lease(query_id: QueryId) -> str:
    return f"query:{query_id}"


def plan_jobs(
    case: Case,
    agencies: Sequence[AgencyConfig],
    *,
    party_ids: Sequence[int] | None,
    agency_ids: Sequence[str] | None,
    kinds: Sequence[str] | None,
) -> list[tuple[Party, AgencyConfig]]:
    """Which (party, agency) pairs a selection means; None selects all. Pure."""
    by_party = {p.id: p for p in case.parties}
    if party_ids is None:
        parties = list(case.parties)
    else:
        unknown = [p for p in party_ids if p not in by_party]
        if unknown:
            raise ValidationFailed(f"parties {unknown} are not parties of case {case.case_number}")
        parties = [by_party[PartyId(p)] for p in dict.fromkeys(party_ids)]
    chosen = list(agencies)
    if agency_ids is not None:
        known = {a.id for a in agencies}
        unknown_agencies = [a for a in agency_ids if a not in known]
        if unknown_agencies:
            raise ValidationFailed(f"unknown agencies {unknown_agencies}")
        chosen = [a for a in chosen if a.id in set(agency_ids)]
    if kinds is not None:
        chosen = [a for a in chosen if a.kind.value in set(kinds)]
    pairs = [(p, a) for p in parties for a in chosen if p.kind in a.party_kinds]
    if not pairs:
        raise ValidationFailed("the selection names no party that any selected agency can be asked about")
    return pairs


class Broker:
    def __init__(
        self,
        store: QueryStore,
        bus: EventBus,
        gateway: AgencyGateway,
        *,
        deadline_seconds: float,
        cluster: Coordinator | None = None,
        on_feedback: Callable[[float], None] | None = None,
    ) -> None:
        self._cluster = cluster
        self._store = store
        #: Jobs this process ended, by agency and final status (the metrics read it when scraped).
        self.ended_jobs: collections.Counter[tuple[str, str]] = collections.Counter()
        self._on_feedback = on_feedback  # seconds from a query's start to its completion (feedback time)
        self._bus = bus
        self._gateway = gateway
        self._deadline = deadline_seconds
        self._runs: dict[QueryId, asyncio.Task[None]] = {}
        #: Per running query (until its run completes it), the jobs not yet recorded as ended, and those of them
        #: whose outcome is being written: the outcome of the last one completes the query in its own transaction
        #: (``JobOutcome.completes_query``).
        self._unended: dict[QueryId, set[JobId]] = {}
        self._recording: dict[QueryId, set[JobId]] = {}
        #: Queries completed that way, with the completion time stored, and those of them already announced on the
        #: bus (by the last of their jobs to publish, ``_announce``; the run announces the others).
        self._completed_by_outcome: dict[QueryId, int] = {}
        self._announced: set[QueryId] = set()
        self._random = random.Random()
        self._closed = False
        # Answers arrive in bursts (a hundred queries fan out at once): their writes share transactions.
        self._attempts = GroupCommit[tuple[JobId, Fence | None], int | FencedOut | None](self._count_attempts)
        # The outcome that completes its query is answered first in its batch: its caller publishes and announces
        # the completion without waiting for the hundreds of callers queued before it to run.
        self._outcomes = GroupCommit[tuple[QueryId, JobOutcome], tuple[Job, list[Asset]] | FencedOut | None](
            self._record_outcomes, first=lambda item: item[1].completes_query
        )

    async def close(self) -> None:
        """Stop every query run; their pending jobs stay pending in the store for the next start."""
        self._closed = True
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        for task in runs:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runs.clear()
        await self._attempts.close()
        await self._outcomes.close()

    async def _record_outcomes(
        self, items: list[tuple[QueryId, JobOutcome]]
    ) -> Sequence[tuple[Job, list[Asset]] | FencedOut | None]:
        """One group commit of outcomes. The jobs recorded (or found ended already) leave their query's unended set
        here, before any caller resumes: the caller of the outcome that completed a query sees none left whatever
        order the callers of the batch resume in."""
        results = await self._store.finish_jobs([outcome for _, outcome in items])
        for (query_id, outcome), result in zip(items, results, strict=True):
            unended = self._unended.get(query_id)
            if unended is not None and not isinstance(result, FencedOut):
                unended.discard(outcome.job_id)
        return results

    async def _count_attempts(self, items: list[tuple[JobId, Fence | None]]) -> list[int | FencedOut | None]:
        job_ids = [job_id for job_id, _ in items]
        counts = await self._store.start_job_attempts(job_ids, now_ms(), fences=[fence for _, fence in items])
        return [counts.get(job_id) for job_id in job_ids]

    async def submit(
        self,
        case: Case,
        judge_id: UserId,
        reason: str,
        *,
        party_ids: Sequence[int] | None = None,
        agency_ids: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        deadline_seconds: float | None = None,
    ) -> tuple[Query, list[Job]]:
        """Persist the query, its jobs and its ``query.submit`` audit entry in one transaction, then start
        them; returns at once (answers stream on the bus). A failed audit write sends nothing."""
        require_under_way(case)  # 终本 / 结案: refused before anything is stored or sent
        pairs = plan_jobs(
            case, list(self._gateway.agencies.values()), party_ids=party_ids, agency_ids=agency_ids, kinds=kinds
        )
        created = now_ms()
        deadline = created + int(1000 * (deadline_seconds or self._deadline))
        query = Query(QueryId(uuid.uuid4().hex), case.id, judge_id, reason, created, deadline)
        jobs = [
            Job(
                JobId(uuid.uuid4().hex),
                query.id,
                party.id,
                AgencyId(agency.id),
                JobStatus.PENDING,
                0,
                None,
                created,
                created,
            )
            for party, agency in pairs
        ]
        await self._store.add_query(query, jobs, audit=submit_audit(query, jobs))
        if self._cluster is not None:
            try:
                await self._cluster.claim(query_lease(query.id))  # a new name: always free
            except Exception as exc:  # Redis is away: run it anyway (job ids make a second run harmless)
                log.warning("query %s: lease not taken (%s); running it here", query.id, exc)
        self._spawn(query, case, jobs, fence_of(self._cluster, query_lease(query.id)))
        return query, jobs

    async def resume_pending(self) -> int:
        """Run every unfinished query no process is running (this one stopped, or its process died);
        returns how many were taken up."""
        resumed = 0
        for query in await self._store.running_queries():
            if query.id in self._runs or self._closed:
                continue
            if self._cluster is not None and not await self._cluster.claim(query_lease(query.id)):
                continue  # a live process runs it
            case = await self._store.get_case(query.case_id)
            jobs = await self._store.query_jobs(query.id)
            log.info("query %s: resuming %d pending jobs", query.id, sum(j.status is JobStatus.PENDING for j in jobs))
            self._spawn(query, case, jobs, fence_of(self._cluster, query_lease(query.id)))
            resumed += 1
        return resumed

    async def wait(self, query_id: QueryId) -> None:
        """Until the query's run has ended (complete, and late answers in or given up)."""
        task = self._runs.get(query_id)
        if task is not None:
            await asyncio.shield(task)

    def running(self) -> list[QueryId]:
        return list(self._runs)

    def _spawn(self, query: Query, case: Case, jobs: list[Job], fence: Fence | None) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._run(query, case, jobs, fence), name=f"query:{query.id}")
        self._runs[query.id] = task
        task.add_done_callback(functools.partial(self._ended, query.id))

    def _ended(self, query_id: QueryId, task: asyncio.Task[None]) -> None:
        if self._runs.get(query_id) is task:
            del self._runs[query_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("query %s: run failed", query_id, exc_info=task.exception())

    async def _run(self, query: Query, case: Case, jobs: list[Job], fence: Fence | None) -> None:
        """Run the pending jobs and complete the query at its deadline, every write under ``fence``: a run
        whose lease was taken over while it was paused stops at its next write (FencedOut)."""
        log_context.bind(query_id=query.id)  # this task's own context: its lines and its jobs' carry the query
        parties = {p.id: p for p in case.parties}
        self._unended[query.id] = {job.id for job in jobs if job.status is JobStatus.PENDING}
        self._recording[query.id] = set()
        tasks = [
            asyncio.create_task(self._fenced_job(query, parties[job.party_id], job, fence), name=f"job:{job.id}")
            for job in jobs
            if job.status is JobStatus.PENDING
        ]
        try:
            pending: set[asyncio.Task[None]] = set()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=max(0.0, query.deadline_ms / 1000 - time.time()))
            self._unended.pop(query.id, None)  # from here this run completes the query (a late answer never does)
            completed_by_outcome = self._completed_by_outcome.pop(query.id, None)
            if completed_by_outcome is not None:  # the last job's outcome completed it: nothing was left pending
                completed, timed_out = completed_by_outcome, []
            else:
                completed = now_ms()
                try:
                    timed_out = await self._store.complete_query(query.id, completed, fence=fence)
                except FencedOut as refused:
                    log.warning("query %s: not completed here: %s", query.id, refused.message)
                    return
            for job in timed_out:
                self.ended_jobs[(job.agency_id, job.status.value)] += 1
                await self._publish_job(query, parties, job, [])
            if query.id not in self._announced:
                self._announced.add(query.id)
                await self._publish(
                    query.id, {"event": "complete", "completed_ms": completed, "timed_out": [j.id for j in timed_out]}
                )
            log.info("query %s: complete, %d of %d jobs timed out", query.id, len(timed_out), len(jobs))
            if self._on_feedback is not None:
                self._on_feedback(max(0.0, (completed - query.created_ms) / 1000))
            if pending:
                await asyncio.wait(pending)  # late answers: in-flight attempts end within their agency timeout
        finally:
            self._unended.pop(query.id, None)
            self._recording.pop(query.id, None)
            self._completed_by_outcome.pop(query.id, None)
            self._announced.discard(query.id)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    if (exc := await _outcome(task)) is not None:
                        log.error("job %s: failed unexpectedly", task.get_name(), exc_info=exc)
            if self._cluster is not None:
                with contextlib.suppress(Exception):  # unreleased, it lapses; nobody resumes a complete query
                    await self._cluster.release(query_lease(query.id))

    async def _fenced_job(self, query: Query, party: Party, job: Job, fence: Fence | None) -> None:
        try:
            await self._run_job(query, party, job, fence)
        except FencedOut as exc:  # another process runs the query now: this job is its to ask and record
            log.warning("job %s of query %s at %s: stopped: %s", job.id, query.id, job.agency_id, exc.message)

    async def _run_job(self, query: Query, party: Party, job: Job, fence: Fence | None) -> None:
        agency = self._gateway.agency(job.agency_id)
        adapter = self._gateway.adapter(agency.kind)
        breaker = self._gateway.breakers[agency.id]
        subject = Subject(party.kind, party.name, party.identifier)
        deadline = query.deadline_ms / 1000
        tries = 0
        while True:
            if time.time() >= deadline:
                return  # the run marks it timed out
            async with self._gateway.limits[agency.id]:
                if not breaker.allow(time.monotonic()):
                    wait = breaker.retry_in(time.monotonic())
                    why = f"circuit open: {agency.name} is failing; not asked (next probe in {wait:.0f} s)"
                    await self._finish(query, party, job, JobStatus.FAILED, why, fence=fence)
                    return
                # The claim before the send: counted under the fence, so a holder paused past its lease
                # learns here, before asking the agency, that another process has the job now.
                started = await self._attempts.submit((job.id, fence))
                if started is None or isinstance(started, FencedOut):
                    breaker.release()
                    if started is not None:
                        raise started
                    return  # no longer pending (timed out while waiting for a slot)
                tries += 1
                try:
                    assets = await adapter.query(agency, subject, job.id)
                except AgencyThrottled as exc:
                    breaker.release()  # busy is not broken
                    error = exc.reason
                except TransientAgencyError as exc:
                    breaker.failure(time.monotonic())
                    error = exc.reason
                except PermanentAgencyError as exc:
                    breaker.failure(time.monotonic())
                    await self._finish(query, party, job, JobStatus.FAILED, exc.reason, fence=fence)
                    return
                except BaseException:
                    breaker.release()
                    raise
                else:
                    breaker.success(time.monotonic())
                    status = JobStatus.ANSWERED if assets else JobStatus.NO_ASSETS
                    await self._finish(query, party, job, status, None, assets, fence=fence)
                    return
            delay = backoff_delay(tries, agency.backoff_ms / 1000, BACKOFF_CAP_SECONDS, self._random.random())
            if not may_retry(
                attempts_made=tries, retries=agency.retries, now=time.time(), delay=delay, deadline=deadline
            ):
                budget = "retries exhausted" if tries > agency.retries else "no time left before the deadline"
                why = f"{error} ({budget} after {tries} attempts)"
                await self._finish(query, party, job, JobStatus.FAILED, why, fence=fence)
                return
            log.info("job %s at %s: %s; retry %d in %.2f s", job.id, agency.id, error, tries, delay)
            await asyncio.sleep(delay)

    async def _finish(
        self,
        query: Query,
        party: Party,
        job: Job,
        status: JobStatus,
        error: str | None,
        assets: Sequence[Any] = (),
        *,
        fence: Fence | None,
    ) -> None:
        # The run's last job to end completes the query with its outcome, in the same write: the other jobs have
        # ended, or their outcomes are queued before this one (the group commit keeps the order). Otherwise, or
        # when one of those writes fails, the run completes the query once every job has returned.
        unended, recording = self._unended.get(query.id), self._recording.get(query.id)
        completes = unended is not None and recording is not None and unended - {job.id} <= recording
        outcome = JobOutcome(job.id, status, now_ms(), error, assets, fence, completes_query=completes)
        if recording is not None:
            recording.add(job.id)
        try:
            await self._record(query, party, job, outcome, unended)
        finally:
            if recording is not None:
                recording.discard(job.id)  # written and published (or given up)
        if recording is not None and not recording:
            await self._announce(query.id)

    async def _record(
        self, query: Query, party: Party, job: Job, outcome: JobOutcome, unended: set[JobId] | None
    ) -> None:
        """Write the outcome (in the next group commit) and publish the job's new state."""
        ended = await self._outcomes.submit((query.id, outcome))
        if isinstance(ended, FencedOut):
            raise ended
        # The outcomes of this write and of those before it have left ``unended`` (``_record_outcomes``): none left
        # means every job of the query had ended by this transaction, which therefore completed the query.
        completed = outcome.completes_query and ended is not None and unended is not None and not unended
        if ended is None:
            return  # already ended (e.g. failed after the deadline marked it timed out): keep that
        self.ended_jobs[(job.agency_id, outcome.status.value)] += 1
        # An answer per agency per query is routine (the store and the screens have it); failures are news.
        why = f" ({outcome.error})" if outcome.error else ""
        log.log(logging.INFO if outcome.error else logging.DEBUG, "query %s: %s at %s → %s%s",
                query.id, party.id, job.agency_id, outcome.status.value, why)  # fmt: skip
        await self._publish_job(query, {party.id: party}, *ended)
        if completed:
            self._completed_by_outcome[query.id] = outcome.at_ms  # announced once every job's state is published

    async def _announce(self, query_id: QueryId) -> None:
        """Publish that the query is complete as soon as the write that completed it has returned and every
        job's state it changed is on the bus (their publishers have all returned), not when the run next
        wakes: a screen that sees ``complete`` has every job's final state before it. Once the run has taken over
        (its deadline came, ``_unended`` dropped) the run announces, with the jobs it timed out."""
        completed = self._completed_by_outcome.get(query_id)
        if completed is None or query_id in self._announced or query_id not in self._unended:
            return
        self._announced.add(query_id)
        await self._publish(query_id, {"event": "complete", "completed_ms": completed, "timed_out": []})

    async def _publish_job(self, query: Query, parties: dict[PartyId, Party], job: Job, assets: list[Asset]) -> None:
        agency = self._gateway.agencies.get(job.agency_id)
        view = job_view(job, query, agency.name if agency else job.agency_id, parties.get(job.party_id), assets)
        await self._publish(query.id, {"event": "job", "job": view})

    async def _publish(self, query_id: QueryId, data: dict[str, Any]) -> None:
        try:
            await self._bus.publish(query_topic(query_id), data)
        except Exception:  # the store has it; a screen that missed it reloads the query
            log.warning("query %s: could not publish an update", query_id, exc_info=True)


async def _outcome(task: asyncio.Task[None]) -> BaseException | None:
    try:
        await task
    except asyncio.CancelledError:
        return None
    except Exception as exc:
        return exc
    return None
