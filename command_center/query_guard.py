"""Where the rules guarding asset queries meet the app: the Idempotency-Key claim, the per-judge limits and
the abuse watch's alarms (the rules themselves are pure: ``query_control.guard`` and ``query_control.abuse``).

Everything is read from the store, never from this process's memory, so a judge's double click sent to two
processes makes one query and the limits count every process's queries. Every request claims a key (the
judge's Idempotency-Key, or one made up for it) in the same store transaction that counts the judge's
queries and requests in flight, one request of a judge at a time: requests sent at once cannot all pass the
same count (a script sending 400 at once got 400 queries past a limit of 120 an hour). Queries are rare
(a judge's limit is 120 an hour), so the lock costs nothing that matters.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aiohttp import web

from command_center.keys import ALARMS, SETTINGS, STORE
from core.errors import Conflict, TooManyRequests
from core.ids import QueryId
from persistence.models import User
from query_control.abuse import AbuseRules, findings
from query_control.guard import DAY_MS, LimitRefusal, check_limits, request_hash

log = logging.getLogger(__name__)

#: A claimed key whose query was never recorded this long after (its process died mid-request) is free again;
#: a submission takes milliseconds (the agencies are asked after the query is stored).
STALE_CLAIM_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


async def claim_query(app: web.Application, judge: User, key: str, body: dict[str, Any]) -> QueryId | None:
    """The query an earlier request with this key made (a replay: answer it again), or None to go ahead (the
    key is then claimed: bind or release it); Conflict when the key was used for another request,
    TooManyRequests past the judge's limits. ``key``: the client's, or ``request_key()`` when it sent none."""
    store = app[STORE]
    now = _now_ms()
    settings = app[SETTINGS].queries
    refusal: LimitRefusal | None = None

    def admit(times: list[int]) -> bool:
        nonlocal refusal
        refusal = check_limits(times, now, per_hour=settings.max_per_judge_hour, per_day=settings.max_per_judge_day)
        return refusal is None

    claim, created = await store.claim_query_slot(judge.id, key, request_hash(body), now, now - DAY_MS, admit)
    if claim is None:
        assert refusal is not None
        raise TooManyRequests(refusal.message, retry_after=refusal.retry_after_seconds)
    if not created:
        if claim.body_hash != request_hash(body):
            raise Conflict("Idempotency-Key: already used for a different query request; a new query needs a new key")
        if claim.query_id is None:
            if now - claim.created_ms < STALE_CLAIM_MS:
                raise Conflict("Idempotency-Key: the query with this key is still being submitted; retry in a moment")
            # the request that claimed it died between claim and query (a killed process): start afresh
            await store.release_query_key(judge.id, key)
            return await claim_query(app, judge, key, body)
        return claim.query_id
    return None


def request_key() -> str:
    """The key claimed for a request sent without an Idempotency-Key (so it is counted while in flight)."""
    return f"auto-{uuid.uuid4().hex}"


async def bind_query(app: web.Application, judge: User, key: str | None, query_id: QueryId) -> None:
    if key is not None:
        await app[STORE].bind_query_key(judge.id, key, query_id)


async def release_query(app: web.Application, judge: User, key: str | None) -> None:
    """The request was refused: its key may be used again."""
    if key is not None:
        await app[STORE].release_query_key(judge.id, key)


async def watch_query(app: web.Application, judge: User, query_id: QueryId) -> None:
    """Raise the abuse watch's alarms the new query calls for, at the judge's court (seen by its supervisors
    and the courts above). A failure is logged: the judge's query is made and must be answered."""
    settings = app[SETTINGS].queries
    rules = AbuseRules(
        burst_queries=settings.burst_queries,
        burst_minutes=settings.burst_minutes,
        night_start_hour=settings.night_start_hour,
        night_end_hour=settings.night_end_hour,
        same_person_cases=settings.same_person_cases,
        same_person_hours=settings.same_person_hours,
    )
    try:
        queried = await app[STORE].judge_queried_parties(judge.id, _now_ms() - rules.lookback_ms)
        found = findings(rules, judge_id=judge.id, judge_name=judge.display_name, query_id=query_id, queried=queried)
        for finding in found:
            alarm = await app[ALARMS].raise_(
                finding.kind, finding.subject, court_id=judge.court_id, details=finding.details
            )
            log.warning("query %s: abuse watch raised %s (alarm %d) about judge %d", query_id, finding.kind.value,
                        alarm.id, judge.id)  # fmt: skip
    except Exception:
        log.exception("query %s: the abuse watch failed", query_id)
