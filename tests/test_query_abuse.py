"""Asset queries under the abuse rules courts audit for: one query per double click (Idempotency-Key),
per-judge limits that hold across processes, and the abuse watch's alarms to the court's supervisors.

The rules are pure and tested here without an event loop; the rest against the real app, the real agency
simulator, SQLite and PostgreSQL (two app instances on one database stand for two processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms.models import AlarmKind
from config.settings import QuerySettings, StoreSettings
from core.errors import ValidationFailed
from core.ids import CaseId, PartyId, QueryId, UserId
from persistence.query_guard_port import QueriedParty
from query_control.abuse import SHANGHAI, AbuseRules, findings, is_night, mask_identifier, night_of, utc_ms
from query_control.guard import DAY_MS, HOUR_MS, check_idempotency_key, check_limits, request_hash
from tests.conftest import POSTGRES_DSN, World, fresh_pg_schema
from tests.query_support import ORG, PERSON, open_case, open_query_screen, query_app, running_fleet, test_agencies

REASON = "申请执行人申请查控被执行人财产"


# pure rules -----------------------------------------------------------------------------------------
def test_idempotency_keys_are_bounded_printable_ascii() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("a") == "a"
    assert check_idempotency_key("x" * 128) == "x" * 128
    assert check_idempotency_key("~!/?#%'\"{}") == "~!/?#%'\"{}"
    problems = {
        "": "Idempotency-Key: 1 to 128 printable ASCII characters, got 0 characters",
        "x" * 129: "Idempotency-Key: 1 to 128 printable ASCII characters, got 129 characters",
        "ab c": "Idempotency-Key: character 3 is ' ' (U+0020); only printable ASCII without spaces is allowed",
        "键1": "Idempotency-Key: character 1 is '键' (U+952E); only printable ASCII without spaces is allowed",
        "a\tb": "Idempotency-Key: character 2 is '\\t' (U+0009); only printable ASCII without spaces is allowed",
    }
    for raw, message in problems.items():
        with pytest.raises(ValidationFailed) as caught:
            check_idempotency_key(raw)
        assert caught.value.message == message


@given(st.text(max_size=140))
def test_a_key_is_accepted_exactly_when_it_is_1_to_128_visible_ascii(raw: str) -> None:
    good = 1 <= len(raw) <= 128 and all(33 <= ord(c) <= 126 for c in raw)
    try:
        assert check_idempotency_key(raw) == raw and good
    except ValidationFailed:
        assert not good


def test_the_same_request_hashes_alike_whatever_the_key_order() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})


def test_limits_roll_and_say_when_the_next_query_is_admitted() -> None:
    now = 10 * DAY_MS
    assert check_limits([], now, per_hour=2, per_day=5) is None
    assert check_limits([now - HOUR_MS, now - HOUR_MS - 1], now, per_hour=2, per_day=5) is None  # left the hour
    refusal = check_limits([now - 600_000, now - 60_000], now, per_hour=2, per_day=5)
    assert refusal is not None and refusal.retry_after_seconds == 3000  # the older one leaves the hour in 50 min
    assert refusal.message == (
        "query limit reached: 2 queries in the last hour (at most 2 per judge); the next one is admitted in 3000 s"
    )
    day = [now - 20 * HOUR_MS, now - 10 * HOUR_MS, now - 5 * HOUR_MS]
    refusal = check_limits(day, now, per_hour=10, per_day=3)
    assert refusal is not None and refusal.retry_after_seconds == 4 * 3600
    assert "3 queries in the last 24 hours (at most 3 per judge)" in refusal.message
    assert check_limits([now - 1], now, per_hour=1, per_day=5) == check_limits([now - 1], now, per_hour=1, per_day=5)
    assert check_limits([now - 1], now, per_hour=1, per_day=5).retry_after_seconds == 3600  # type: ignore[union-attr]


RULES = AbuseRules(burst_queries=3, burst_minutes=10, night_start_hour=22, night_end_hour=6, same_person_cases=3,
                   same_person_hours=24)  # fmt: skip


def _rows(*queries: tuple[str, int, int, list[tuple[int, str]]]) -> list[QueriedParty]:
    """(query id, case id, time, [(party id, identifier)]) → the store's rows."""
    return [QueriedParty(QueryId(q), CaseId(c), t, PartyId(p), ident) for q, c, t, parties in queries
            for p, ident in parties]  # fmt: skip


def test_night_is_shanghai_time_and_wraps_midnight() -> None:
    assert is_night(utc_ms(2026, 3, 1, 22, 0), RULES) and is_night(utc_ms(2026, 3, 2, 5, 59), RULES)
    assert not is_night(utc_ms(2026, 3, 1, 21, 59), RULES) and not is_night(utc_ms(2026, 3, 2, 6, 0), RULES)
    assert not is_night(utc_ms(2026, 3, 1, 12, 0), RULES)  # noon in Shanghai is 04:00 UTC
    assert is_night(utc_ms(2026, 3, 1, 15, 0, tz=UTC), RULES)  # 15:00 UTC is 23:00 in Shanghai
    assert night_of(utc_ms(2026, 3, 2, 3, 0), RULES) == night_of(utc_ms(2026, 3, 1, 23, 0), RULES) == "2026-03-01"
    daytime = AbuseRules(**{**_fields(RULES), "night_start_hour": 1, "night_end_hour": 5})
    assert is_night(utc_ms(2026, 3, 1, 1, 0), daytime) and not is_night(utc_ms(2026, 3, 1, 5, 0), daytime)
    never = AbuseRules(**{**_fields(RULES), "night_start_hour": 3, "night_end_hour": 3})
    assert not any(is_night(utc_ms(2026, 3, 1, h), never) for h in range(24))


def _fields(rules: AbuseRules) -> dict[str, Any]:
    return {name: getattr(rules, name) for name in AbuseRules.__dataclass_fields__}


def test_findings_name_the_judge_and_the_count_never_the_id_number() -> None:
    person, other = "11010519491231002X", "91350100M000100Y43"
    noon = utc_ms(2026, 3, 2, 12, 0)
    minute = 60_000
    rows = _rows(("q1", 1, noon - 30 * minute, [(11, person)]),  # outside the 10-minute burst window
                 ("q2", 2, noon - 8 * minute, [(21, person), (22, other)]),
                 ("q3", 3, noon - 2 * minute, [(31, other)]),
                 ("q4", 4, noon, [(41, person)]))  # fmt: skip

    def find(query: str, upto: list[QueriedParty] = rows) -> dict[AlarmKind, Any]:
        found = findings(RULES, judge_id=UserId(7), judge_name="王法官", query_id=QueryId(query), queried=upto)
        return {f.kind: f for f in found}

    assert find("q2", rows[:3]) == {}
    found = find("q4")
    assert set(found) == {AlarmKind.QUERY_BURST, AlarmKind.QUERY_SAME_PERSON}
    burst = found[AlarmKind.QUERY_BURST]
    assert burst.subject == "7" and burst.details["count"] == 3 and burst.details["judge_name"] == "王法官"
    same = found[AlarmKind.QUERY_SAME_PERSON]
    assert same.subject == "7|party:11" and same.details["count"] == 3 and same.details["case_ids"] == [1, 2, 4]
    assert same.details["person"] == "1101************2X" == mask_identifier(person)
    for finding in found.values():
        assert person not in str(finding.subject) + str(finding.details)
    assert AlarmKind.QUERY_SAME_PERSON not in find("q3")  # the other party: cases 2 and 3 only

    night = utc_ms(2026, 3, 2, 23, 30)
    late = _rows(("n1", 1, night - 3 * HOUR_MS, [(11, person)]), ("n2", 1, night - HOUR_MS, [(11, person)]),
                 ("n3", 2, night, [(21, other)]))  # fmt: skip
    at_night = find("n3", late)[AlarmKind.QUERY_NIGHT]
    assert at_night.subject == "7|2026-03-02" and at_night.details["count"] == 2  # 20:30 was not night
    assert datetime.fromtimestamp(night / 1000, SHANGHAI).hour == 23


# against the app --------------------------------------------------------------------------------------
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def apps(tmp_path: Path, kind: str, count: int, **queries: Any) -> AsyncIterator[list[World]]:
    """``count`` app instances on one database (like server processes), pointed at the agency simulator."""
    settings = QuerySettings(deadline_seconds=5.0, **{"night_start_hour": 0, "night_end_hour": 0, **queries})
    async with running_fleet(test_agencies()) as (_, pointed), fresh_pg_schema() as schema:
        store = None if kind == "sqlite" else StoreSettings(url=POSTGRES_DSN, pool_min=1, pool_max=4)
        pg = None if kind == "sqlite" else schema
        async with query_app(tmp_path, pointed, store=store, schema=pg, queries=settings) as first:
            if count == 1:
                yield [first]
                return
            async with query_app(tmp_path, pointed, store=store, schema=pg, queries=settings,
                                 tokens=first.tokens) as second:  # fmt: skip
                yield [first, second]


async def _post(world: World, body: dict[str, Any], key: str | None = None, who: str = "judge") -> Any:
    headers = world.auth(who) | ({"Idempotency-Key": key} if key is not None else {})
    return await world.client.post("/api/queries", json=body, headers=headers)


@pytest.mark.parametrize("kind", STORES)
async def test_a_double_click_makes_one_query(tmp_path: Path, kind: str) -> None:
    async with apps(tmp_path, kind, 2) as (one, two):
        case = await open_case(one)
        body = {
            "case_id": case["id"],
            "reason": REASON,
            "agency_ids": ["icbc"],
            "party_ids": [case["parties"][0]["id"]],
        }
        first = await _post(one, body, key="click-1")
        assert first.status == 202, await first.text()
        made = await first.json()
        again = await _post(two, body, key="click-1")  # the second click reached the other process
        assert again.status == 200, await again.text()
        assert (await again.json())["id"] == made["id"]
        assert [q.id for q in await one.store.list_queries(case_id=case["id"])] == [made["id"]]

        other_body = await _post(one, {**body, "reason": "另一次查询的理由"}, key="click-1")
        assert other_body.status == 409
        assert (await other_body.json())["error"]["message"] == (
            "Idempotency-Key: already used for a different query request; a new query needs a new key"
        )
        fresh = await _post(one, body, key="click-2")
        assert fresh.status == 202 and (await fresh.json())["id"] != made["id"]

        bad = await _post(one, body, key="x" * 129)
        assert bad.status == 422 and "1 to 128 printable ASCII" in (await bad.json())["error"]["message"]

        refused = await _post(one, {**body, "party_ids": [999999]}, key="click-3")  # not made: the key is free
        assert refused.status == 422
        assert (await _post(one, body, key="click-3")).status == 202

        views = [e for e in await one.store.audit_entries() if e.action == "query.view"]
        assert [e.details.get("idempotent_replay") for e in views] == [True]  # the replay showed results
        assert await one.store.list_alarms(court_ids=None, live_only=False) == []  # ordinary work: no alarm


@pytest.mark.parametrize("kind", STORES)
async def test_per_judge_limits_hold_across_processes(tmp_path: Path, kind: str) -> None:
    async with apps(tmp_path, kind, 2, max_per_judge_hour=2) as (one, two):
        case = await open_case(one)
        body = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"]}
        assert (await _post(one, body, key="k1")).status == 202
        assert (await _post(two, body)).status == 202
        refused = await _post(one, body, key="k3")
        assert refused.status == 429, await refused.text()
        wait = int(refused.headers["Retry-After"])
        assert 3500 <= wait <= 3600
        error = (await refused.json())["error"]
        assert error["code"] == "too_many_requests"
        assert error["message"].startswith("query limit reached: 2 queries in the last hour (at most 2 per judge)")
        assert (await _post(two, body, key="k1")).status == 200  # a replay is not a new query
        assert (await _post(two, body, key="k3")).status == 429  # the refused key was not kept

        judge2 = await one.store.find_user("judge2")
        assert judge2 is not None
        other = await one.client.post("/api/cases", json={"case_number": "(2026)黑01执124号", "title": "t",
                                      "parties": [{"kind": "person", "name": PERSON[0], "identifier": PERSON[1]}],
                                      "judge_ids": [judge2.id]}, headers=one.auth("supervisor"))  # fmt: skip
        assert other.status == 201
        theirs = await _post(two, {"case_id": (await other.json())["id"], "reason": REASON, "agency_ids": ["icbc"]},
                             who="judge2")  # fmt: skip
        assert theirs.status == 202  # the limit is per judge


@pytest.mark.parametrize("kind", STORES)
async def test_the_abuse_watch_alarms_supervisors_without_disclosing_the_person(tmp_path: Path, kind: str) -> None:
    hour = datetime.now(SHANGHAI).hour
    night = {"night_start_hour": hour, "night_end_hour": (hour + 2) % 24}  # "night" is now
    async with apps(tmp_path, kind, 1, burst_queries=3, same_person_cases=2, **night) as (world,):
        case = await open_case(world)
        judge = await world.store.find_user("judge")
        assert judge is not None
        second = await world.client.post("/api/cases", json={"case_number": "(2026)黑01执125号", "title": "t",
                                         "parties": [{"kind": "person", "name": PERSON[0], "identifier": PERSON[1]}],
                                         "judge_ids": [judge.id]}, headers=world.auth("supervisor"))  # fmt: skip
        assert second.status == 201
        other = await second.json()
        person = case["parties"][0]["id"]
        for case_id, party in ((case["id"], person), (other["id"], other["parties"][0]["id"])):
            body = {"case_id": case_id, "reason": REASON, "agency_ids": ["icbc"], "party_ids": [party]}
            assert (await _post(world, body)).status == 202
        kinds = {a.kind for a in await world.store.list_alarms(court_ids=None, live_only=True)}
        assert kinds == {AlarmKind.QUERY_NIGHT, AlarmKind.QUERY_SAME_PERSON}
        org = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"], "party_ids": [case["parties"][1]["id"]]}
        assert (await _post(world, org)).status == 202

        listed = await world.client.get("/api/alarms", headers=world.auth("operator"))
        assert listed.status == 200
        text = await listed.text()
        assert PERSON[1] not in text and PERSON[0] not in text and ORG[1] not in text
        alarms = {a["kind"]: a for a in (await listed.json())["alarms"]}
        assert set(alarms) == {"query_burst", "query_night", "query_same_person"}
        judge = await world.store.find_user("judge")
        assert judge is not None
        for alarm in alarms.values():
            assert alarm["court_id"] == "HLJ01" and alarm["details"]["judge_id"] == judge.id
            assert alarm["details"]["judge_name"] == "judge"
        assert alarms["query_burst"]["details"]["count"] == 3
        assert alarms["query_same_person"]["details"]["count"] == 2
        assert alarms["query_same_person"]["details"]["case_ids"] == sorted([case["id"], other["id"]])
        assert alarms["query_night"]["details"]["count"] == 1  # raised at the first night query
        far = await world.client.get("/api/alarms", headers=world.auth("far_supervisor"))
        assert (await far.json())["alarms"] == []  # another city's court does not see them


async def test_every_read_of_query_results_is_audited(tmp_path: Path) -> None:
    async with apps(tmp_path, "sqlite", 1) as (world,):
        case = await open_case(world)
        body = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"]}
        query = await (await _post(world, body)).json()
        judge = await world.store.find_user("judge")
        supervisor = await world.store.find_user("supervisor")
        assert judge is not None and supervisor is not None

        def reads() -> Any:
            return world.store.audit_entries()

        before = len(await reads())
        assert (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("judge"))).status == 200
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: any(m["type"] == "snapshot" for m in s.messages), within=5)
        await screen.ws.close()
        listed = await world.client.get(f"/api/followups?query_id={query['id']}", headers=world.auth("supervisor"))
        assert listed.status == 200
        entries = (await reads())[before:]
        assert [(e.action, e.actor_id, e.query_id) for e in entries] == [
            ("query.view", judge.id, query["id"]),
            ("query.watch", judge.id, query["id"]),
            ("followup.list", supervisor.id, query["id"]),
        ]
        assert entries[1].case_id == case["id"]


async def test_refusals_name_no_case_party_or_staff_of_another_court(tmp_path: Path) -> None:
    async with apps(tmp_path, "sqlite", 1) as (world,):
        case = await open_case(world)
        body = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"]}
        query = await (await _post(world, body)).json()
        refusals = [
            (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("far_supervisor")), 403,
             "this case is outside your jurisdiction"),
            (await world.client.get(f"/api/cases/{case['id']}", headers=world.auth("far_supervisor")), 403,
             "this case is outside your jurisdiction"),
            (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("judge2")), 403,
             "you are not assigned to this case"),
            (await _post(world, body, who="judge2"), 403, "you are not assigned to this case"),
        ]  # fmt: skip
        for response, status, message in refusals:
            assert response.status == status
            error = (await response.json())["error"]
            assert error["message"] == message
            assert case["case_number"] not in str(error) and "HLJ01" not in str(error)
        nobody = await world.client.put(f"/api/cases/{case['id']}/judges", json={"judge_ids": [999_999]},
                                        headers=world.auth("supervisor"))  # fmt: skip
        far_judge = await world.client.put(f"/api/cases/{case['id']}/judges", json={"judge_ids": [1]},
                                           headers=world.auth("supervisor"))  # fmt: skip
        assert nobody.status == far_judge.status == 422  # an unknown id is told like another court's user
        assert (await nobody.json())["error"]["message"] == "judge_ids: user 999999 is not a judge of court HLJ01"


async def test_a_key_claimed_by_a_request_that_died_is_freed_after_a_minute(tmp_path: Path) -> None:
    import time

    from command_center.api.queries import QueryIn

    async with apps(tmp_path, "sqlite", 1) as (world,):
        case = await open_case(world)
        body = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"]}
        digest = request_hash(QueryIn.model_validate(body).model_dump(mode="json"))
        judge = await world.store.find_user("judge")
        assert judge is not None
        now = int(time.time() * 1000)
        await world.store.claim_query_key(judge.id, "in-flight", digest, now)  # another process is making it
        await world.store.claim_query_key(judge.id, "orphan", digest, now - 120_000)  # its process died
        busy = await _post(world, body, key="in-flight")
        assert busy.status == 409 and "still being submitted" in (await busy.json())["error"]["message"]
        made = await _post(world, body, key="orphan")
        assert made.status == 202, await made.text()
        assert (await (await _post(world, body, key="orphan")).json())["id"] == (await made.json())["id"]
