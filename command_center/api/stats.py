"""Console statistics: per court the caller sees, units online and offline and by status, alarms open, tasks
under way, and today's asset queries with the share that gave complete feedback within the deadline (the 30-second
promise)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from command_center.api.registry import Registry, json_response
from command_center.auth import Access, current_user
from command_center.keys import STORE, TRACKER
from courts.duty_day import bounds, today
from courts.visibility import visible_courts
from persistence.models import Status
from tasks.models import LIVE

api = Registry()


class StatsOut(BaseModel):
    day: str
    courts: list[dict[str, Any]]
    total: dict[str, Any]


def _share(on_time: int, count: int) -> float | None:
    return None if count == 0 else round(on_time / count, 4)


@api.route("GET", "/api/stats", summary="Console statistics for the caller's courts (today)", tag="stats",
           access=frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN}), response=StatsOut)  # fmt: skip
async def stats(request: web.Request) -> web.StreamResponse:
    store, tracker = request.app[STORE], request.app[TRACKER]
    now = int(time.time() * 1000)
    day = today(now)
    start, _ = bounds(day)
    courts = await visible_courts(store, current_user(request))
    rows: dict[str, Counter[str]] = {}

    def row(court_id: str) -> Counter[str]:
        return rows.setdefault(court_id, Counter())

    for unit in await store.list_units(courts):
        counter = row(unit.court_id)
        counter["units"] += 1
        state = tracker.state(unit.id)
        if state.status is not Status.OFFLINE:
            counter[state.status.value] += 1
        # online and offline split the units by the one definition the screens use (UnitView.online): a
        # silent unit in SOS counts as sos and as offline.
        counter["online" if state.online else "offline"] += 1
    for alarm in await store.list_alarms(court_ids=courts, live_only=True, limit=10_000):
        row(alarm.court_id)["alarms_open"] += 1
    for task in await store.list_tasks(court_ids=courts, statuses=LIVE, limit=10_000):
        row(task.court_id)["tasks_under_way"] += 1
    for outcome in await store.query_outcomes(courts, start):
        counter = row(outcome.court_id)
        counter["queries_today"] += 1
        counter["queries_on_time"] += outcome.on_time
    keys = ["units", "online", *(s.value for s in Status), "alarms_open", "tasks_under_way", "queries_today",
            "queries_on_time"]  # fmt: skip
    per_court = []
    for court_id in sorted(rows):
        counter = rows[court_id]
        view: dict[str, Any] = {"court_id": court_id, **{k: counter[k] for k in keys}}
        view["queries_on_time_share"] = _share(counter["queries_on_time"], counter["queries_today"])
        per_court.append(view)
    total: dict[str, Any] = {k: sum(c[k] for c in per_court) for k in keys}
    total["queries_on_time_share"] = _share(total["queries_on_time"], total["queries_today"])
    return json_response(StatsOut(day=day, courts=per_court, total=total))
