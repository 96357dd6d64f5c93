"""The abuse watch on asset queries (查控防滥用): which of a judge's queries a court's supervisors must look at.

Three rules, each a finding the alarm desk raises about the judge (pure: values in, findings out, so the
tests need no event loop; ``command_center.api.queries`` reads the store and raises the alarms):

- a burst: ``burst_queries`` or more of the judge's queries within ``burst_minutes``;
- at night: a query started between ``night_start_hour`` and ``night_end_hour``, Asia/Shanghai time
  (UTC+8; China has kept no daylight saving since 1991), one alarm per judge and night;
- the same person in several cases: one identifier (resident ID number or credit code) queried by the
  judge in ``same_person_cases`` different cases within ``same_person_hours``.

Alarms are read by the court's operators as well as its supervisors, so a finding names the judge and the
count, and never an ID number in clear: the person is shown masked (region and last two characters), the
cases by their ids (which only people entitled to the case can open) and the alarm's subject carries the
party's row id, not the identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from alarms.models import AlarmKind
from core.ids import QueryId, UserId
from persistence.query_guard_port import QueriedParty

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class AbuseRules:
    burst_queries: int
    burst_minutes: float
    night_start_hour: int
    night_end_hour: int  # equal to the start: no night watch
    same_person_cases: int
    same_person_hours: float

    @property
    def lookback_ms(self) -> int:
        """How far back the watch must read the judge's queries to apply every rule."""
        return int(max(self.burst_minutes * MINUTE_MS, self.same_person_hours * HOUR_MS, 24 * HOUR_MS))


@dataclass(frozen=True, slots=True)
class Finding:
    kind: AlarmKind
    subject: str  # one live alarm per (kind, subject): per judge, per judge and night, per judge and person
    details: dict[str, Any]


def mask_identifier(identifier: str) -> str:
    """``110105********002X`` → ``1101************2X``: the region, and enough to tell two people apart in
    one list, but not the number (GB 11643 numbers carry the birth date and sequence in the middle)."""
    if len(identifier) <= 6:
        return "*" * len(identifier)
    return identifier[:4] + "*" * (len(identifier) - 6) + identifier[-2:]


def is_night(at_ms: int, rules: AbuseRules) -> bool:
    start, end = rules.night_start_hour, rules.night_end_hour
    if start == end:
        return False
    hour = datetime.fromtimestamp(at_ms / 1000, SHANGHAI).hour
    return start <= hour < end if start < end else hour >= start or hour < end


def night_of(at_ms: int, rules: AbuseRules) -> str:
    """The date (YYYY-MM-DD, Shanghai) on which the night holding ``at_ms`` began."""
    local = datetime.fromtimestamp(at_ms / 1000, SHANGHAI)
    if rules.night_start_hour > rules.night_end_hour and local.hour < rules.night_end_hour:
        local -= timedelta(days=1)
    return local.strftime("%Y-%m-%d")


def findings(
    rules: AbuseRules,
    *,
    judge_id: UserId,
    judge_name: str,
    query_id: QueryId,
    queried: Sequence[QueriedParty],
) -> list[Finding]:
    """What the judge's new query ``query_id`` (among ``queried``, the judge's recent (query, party) rows,
    the new query's included) calls for."""
    mine = [q for q in queried if q.query_id == query_id]
    if not mine:
        return []
    now_ms = mine[0].created_ms
    started = {q.query_id: q.created_ms for q in queried}
    who = {"judge_id": judge_id, "judge_name": judge_name, "query_id": query_id}
    out: list[Finding] = []

    burst_window = int(rules.burst_minutes * MINUTE_MS)
    in_burst = [t for t in started.values() if now_ms - burst_window < t <= now_ms]
    if len(in_burst) >= rules.burst_queries:
        out.append(Finding(AlarmKind.QUERY_BURST, f"{judge_id}", {
            **who, "count": len(in_burst), "minutes": rules.burst_minutes,
            "text": f"{judge_name}: {len(in_burst)} queries in {rules.burst_minutes:g} minutes",
        }))  # fmt: skip

    if is_night(now_ms, rules):
        night = night_of(now_ms, rules)
        tonight = [t for t in started.values() if is_night(t, rules) and night_of(t, rules) == night and t <= now_ms]
        out.append(Finding(AlarmKind.QUERY_NIGHT, f"{judge_id}|{night}", {
            **who, "count": len(tonight), "night": night,
            "text": f"{judge_name}: {len(tonight)} queries at night ({night})",
        }))  # fmt: skip

    person_window = int(rules.same_person_hours * HOUR_MS)
    for identifier in dict.fromkeys(q.identifier for q in mine):
        rows = [q for q in queried if q.identifier == identifier and now_ms - person_window < q.created_ms <= now_ms]
        cases = sorted({q.case_id for q in rows})
        if len(cases) >= rules.same_person_cases:
            party = min(q.party_id for q in rows)
            masked = mask_identifier(identifier)
            out.append(Finding(AlarmKind.QUERY_SAME_PERSON, f"{judge_id}|party:{party}", {
                **who, "count": len(cases), "case_ids": cases, "person": masked, "hours": rules.same_person_hours,
                "text": f"{judge_name}: the same person ({masked}) queried in {len(cases)} cases",
            }))  # fmt: skip
    return out


def utc_ms(year: int, month: int, day: int, hour: int, minute: int = 0, *, tz: timezone = SHANGHAI) -> int:
    """Milliseconds since the epoch of a wall-clock time (Shanghai by default), to state rules and tests in it."""
    return int(datetime(year, month, day, hour, minute, tzinfo=tz).astimezone(UTC).timestamp() * 1000)
