"""Point-to-point asset queries end to end: real agency simulator servers on localhost, the real app,
the judge's real screen socket, the store as the record (SQLite here; PostgreSQL in the resume test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from command_center.keys import BUS
from config.settings import StoreSettings
from core.ids import QueryId
from event_bus.port import Event
from persistence.query_models import JobStatus
from query_control.audit import verify
from tests.conftest import POSTGRES_DSN
from tests.query_support import (
    ORG,
    PERSON,
    expected_refs,
    get_query,
    open_case,
    open_query_screen,
    query_app,
    running_fleet,
    submit,
    test_agencies,
    wait_complete,
)


async def test_every_agency_answers_and_streams_to_the_judges_screen(tmp_path: Path) -> None:
    agencies = test_agencies({a.id: {"latency_median_ms": 300, "latency_sigma": 0.2} for a in test_agencies()})
    async with running_fleet(agencies) as (fleet, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        assert [p["identifier"] for p in case["parties"]] == [PERSON[1], ORG[1]]
        started = time.monotonic()
        query = await submit(world, case["id"])
        assert len(query["jobs"]) == 18 + 16 and {j["status"] for j in query["jobs"]} == {"pending"}
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: s.complete and all(j["status"] != "pending" for j in s.jobs.values()))
        assert time.monotonic() - started < 5.0
        updates = [m for m in screen.messages if m["type"] == "query_update"]
        assert len(updates) >= 10  # answers arrived one by one, not as one final picture
        assert [m["seq"] for m in updates] == sorted(m["seq"] for m in updates)

        by_id = {a.id: a for a in pointed}
        identifiers = {p["id"]: p["identifier"] for p in case["parties"]}
        final = await get_query(world, query["id"])
        for job in final["jobs"]:
            refs = expected_refs(by_id[job["agency_id"]], identifiers[job["party_id"]])
            assert job["status"] == ("answered" if refs else "no_assets"), job
            assert [a["ref"] for a in job["assets"]] == refs
            assert screen.jobs[job["job_id"]]["status"] == job["status"]
            assert [a["ref"] for a in screen.jobs[job["job_id"]]["assets"]] == refs
            assert fleet[job["agency_id"]].stats.new_requests[job["job_id"]] == 1
        for agency in pointed:  # the per-agency limit held: the agencies never had to throttle us
            assert fleet[agency.id].stats.max_in_flight <= agency.concurrency
            assert fleet[agency.id].stats.injected["throttled"] == 0
        assert max(fleet[a.id].stats.max_in_flight for a in pointed) >= 2
        assert any(j["status"] == "answered" for j in final["jobs"])
        assert any(j["status"] == "no_assets" for j in final["jobs"])

        entries = await world.store.audit_entries()
        actions = [(e.action, e.query_id) for e in entries]
        assert ("query.submit", query["id"]) in actions and ("query.view", query["id"]) in actions
        submitted = next(e for e in entries if e.action == "query.submit")
        judge = await world.store.find_user("judge")
        assert judge is not None and submitted.actor_id == judge.id and submitted.case_id == case["id"]
        assert submitted.reason == "申请执行人申请查控被执行人财产"
        assert (await verify(world.store)).ok


async def test_the_last_answer_completes_the_query_in_the_same_write(tmp_path: Path) -> None:
    """The query is complete when its last agency's answer is stored, not one write later: the stored and
    announced completion time is that answer's."""
    quick, slow = (a.id for a in test_agencies()[:2])
    agencies = test_agencies({quick: {"latency_median_ms": 50, "latency_sigma": 0.1},
                              slow: {"latency_median_ms": 600, "latency_sigma": 0.1}})  # fmt: skip
    async with running_fleet(agencies) as (_, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        person = case["parties"][0]["id"]
        query = await submit(world, case["id"], party_ids=[person], agency_ids=[quick, slow])
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: s.complete)
        final = await wait_complete(world, query["id"])
        last_answer = max(j["answered_ms"] for j in final["jobs"])
        assert final["completed_ms"] == last_answer
        [complete] = [m for m in screen.messages if m["type"] == "query_update" and m["event"] == "complete"]
        assert complete["completed_ms"] == last_answer and complete["timed_out"] == []


async def test_completion_is_announced_when_the_last_answer_is_stored_and_published(tmp_path: Path) -> None:
    """The screen learns that the query is complete from the task that stored and published its last answer,
    right after it, not when the query's run next wakes (a few turns of a busy event loop later); and after
    every job's final state, so a screen that sees ``complete`` has them all."""
    quick, slow = (a.id for a in test_agencies()[:2])
    agencies = test_agencies({quick: {"latency_median_ms": 50, "latency_sigma": 0.1},
                              slow: {"latency_median_ms": 400, "latency_sigma": 0.1}})  # fmt: skip
    async with running_fleet(agencies) as (_, pointed), query_app(tmp_path, pointed) as world:
        bus = world.client.app[BUS]
        publish = bus.publish
        announced_by: list[str] = []

        async def watched(topic: str, data: Mapping[str, Any]) -> Event:
            if data.get("event") == "complete":
                task = asyncio.current_task()
                announced_by.append(task.get_name() if task is not None else "")
            return await publish(topic, data)

        bus.publish = watched  # type: ignore[method-assign]  # the real bus still publishes; we note who asked
        case = await open_case(world)
        person = case["parties"][0]["id"]
        query = await submit(world, case["id"], party_ids=[person], agency_ids=[quick, slow])
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: s.complete)
        assert announced_by == [f"job:{j['job_id']}" for j in query["jobs"] if j["agency_id"] == slow]
        events = [m["event"] for m in screen.messages if m["type"] == "query_update"]
        assert events[-1] == "complete" and all(j["status"] != "pending" for j in screen.jobs.values())


async def test_only_a_judge_assigned_to_the_case_may_query_or_watch(tmp_path: Path) -> None:
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        refused = await world.client.post(
            "/api/queries", json={"case_id": case["id"], "reason": "查控"}, headers=world.auth("judge2")
        )
        assert refused.status == 403 and "not assigned" in (await refused.json())["error"]["message"]
        assert (await world.client.get(f"/api/cases/{case['id']}", headers=world.auth("judge2"))).status == 403
        no_reason = await world.client.post(
            "/api/queries", json={"case_id": case["id"], "reason": ""}, headers=world.auth("judge")
        )
        assert no_reason.status == 422
        query = await submit(world, case["id"], agency_ids=["icbc"], party_ids=[case["parties"][0]["id"]])
        assert [j["agency_id"] for j in query["jobs"]] == ["icbc"]
        assert (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("judge2"))).status == 403

        other = await open_query_screen(world, query["id"], "judge2")
        await other.pump(lambda s: bool(s.messages) and s.messages[-1]["type"] == "error", within=5)
        assert other.messages[-1]["code"] == "forbidden"

        # once assigned, the second judge may look (the first keeps the query as its owner)
        assigned = await world.client.put(
            f"/api/cases/{case['id']}/judges",
            json={"judge_ids": [*case["judge_ids"], (await world.store.find_user("judge2")).id]},  # type: ignore[union-attr]
            headers=world.auth("supervisor"),
        )
        assert assigned.status == 200, await assigned.text()
        assert (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("judge2"))).status == 200
        far = await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("far_supervisor"))
        assert far.status == 403


async def test_bad_parties_are_refused_with_a_precise_error(tmp_path: Path) -> None:
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        bad_id = await world.client.post(
            "/api/cases",
            json={
                "case_number": "(2026)黑01执9号",
                "title": "t",
                "parties": [{"kind": "person", "name": "李四", "identifier": "110105194912310021"}],
            },
            headers=world.auth("supervisor"),
        )
        error = (await bad_id.json())["error"]
        assert bad_id.status == 422 and error["message"] == (
            "parties.0.identifier: resident ID number: check digit is 1, expected X (GB 11643)"
        )
        bad_code = await world.client.post(
            "/api/cases",
            json={
                "case_number": "(2026)黑01执9号",
                "title": "t",
                "parties": [{"kind": "organisation", "name": "某公司", "identifier": "91350100M000100Y44"}],
            },
            headers=world.auth("supervisor"),
        )
        assert "check character is 4, expected 3 (GB 32100)" in (await bad_code.json())["error"]["message"]
        bad_number = await world.client.post(
            "/api/cases", json={"case_number": "黑01执9号", "title": "t"}, headers=world.auth("supervisor")
        )
        assert bad_number.status == 422 and "case_number" in (await bad_number.json())["error"]["message"]
        assert await world.store.list_cases() == []


async def test_down_slow_and_garbage_agencies_leave_the_rest_intact_and_on_time(tmp_path: Path) -> None:
    """One agency down, one slower than the deadline, one answering garbage: the query completes at its
    deadline with the right statuses, the others' results intact, and the slow one's late answer kept."""
    profiles = {"vehicles": {"latency_median_ms": 2500, "latency_sigma": 0.0}, "tax": {"malformed_rate": 1.0}}
    agencies = test_agencies(profiles, timeout_seconds=4.0)
    async with running_fleet(agencies) as (fleet, pointed), query_app(tmp_path, pointed, deadline=1.5) as world:
        await fleet["ccb"].close()  # down: connection refused
        case = await open_case(world)
        started = time.monotonic()
        query = await submit(world, case["id"], party_ids=[case["parties"][0]["id"]])
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: s.complete, within=5)
        elapsed = time.monotonic() - started
        assert 1.4 < elapsed < 2.2, elapsed  # complete at the deadline, not at the slow agency's pace
        done = await get_query(world, query["id"])
        assert done["complete"] and done["completed_ms"] - done["deadline_ms"] < 500
        status = {j["agency_id"]: j for j in done["jobs"]}
        assert status["vehicles"]["status"] == "timed_out"
        assert status["ccb"]["status"] == "failed" and "connection failed" in status["ccb"]["error"]
        assert status["ccb"]["attempts"] == 2  # one retry for a transient error
        assert status["tax"]["status"] == "failed" and "malformed reply" in status["tax"]["error"]
        assert status["tax"]["attempts"] == 1  # garbage is not retried
        by_id = {a.id: a for a in pointed}
        for agency_id, job in status.items():
            if agency_id in ("vehicles", "ccb", "tax"):
                continue
            refs = expected_refs(by_id[agency_id], PERSON[1])
            assert job["status"] == ("answered" if refs else "no_assets") and [a["ref"] for a in job["assets"]] == refs

        # the slow agency's answer arrives after the deadline: stored, shown, marked late
        job_id = status["vehicles"]["job_id"]
        await screen.pump(lambda s: s.jobs[job_id]["status"] != "timed_out", within=5)
        late = screen.jobs[job_id]
        refs = expected_refs(by_id["vehicles"], PERSON[1])
        assert late["late"] and late["status"] == ("answered" if refs else "no_assets")
        assert [a["ref"] for a in late["assets"]] == refs
        stored = {j["job_id"]: j for j in (await get_query(world, query["id"]))["jobs"]}
        assert stored[job_id] == late
        assert fleet["vehicles"].stats.new_requests[job_id] == 1


async def test_the_circuit_opens_for_a_failing_agency_and_closes_when_it_recovers(tmp_path: Path) -> None:
    agencies = test_agencies({"icbc": {"outage": True}}, retries=0, breaker_failures=2, breaker_reset_seconds=0.6)
    async with running_fleet(agencies) as (fleet, pointed), query_app(tmp_path, pointed) as world:
        case = await open_case(world)
        person = [case["parties"][0]["id"]]

        async def ask() -> dict[str, object]:
            query = await submit(world, case["id"], agency_ids=["icbc"], party_ids=person)
            done = await wait_complete(world, query["id"])
            job: dict[str, object] = done["jobs"][0]
            return job

        for _ in range(2):
            job = await ask()
            assert job["status"] == "failed" and "HTTP 503" in str(job["error"])
        assert fleet["icbc"].stats.injected["outage"] == 2
        circuit = {
            a["id"]: a["circuit"]
            for a in (await (await world.client.get("/api/agencies", headers=world.auth("judge"))).json())["agencies"]
        }
        assert circuit["icbc"] == "open" and circuit["ccb"] == "closed"
        job = await ask()  # open: not sent at all
        assert job["status"] == "failed" and "circuit open" in str(job["error"]) and job["attempts"] == 0
        assert fleet["icbc"].stats.injected["outage"] == 2

        fleet["icbc"].profile = fleet["icbc"].profile.model_copy(update={"outage": False})
        await asyncio.sleep(0.7)
        job = await ask()  # half-open probe succeeds: closed again
        assert job["status"] in ("answered", "no_assets")
        assert (await ask())["status"] in ("answered", "no_assets")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_query_survives_the_server_dying_mid_query_without_duplicate_requests(
    tmp_path: Path, backend: str, pg_schema: str
) -> None:
    profiles = {a.id: {"latency_median_ms": 800, "latency_sigma": 0.0} for a in test_agencies()}
    agencies = test_agencies(profiles, concurrency=1)  # throttled: some jobs are still unsent at the crash
    store = StoreSettings(url=POSTGRES_DSN) if backend == "postgres" else None
    schema = pg_schema if backend == "postgres" else None
    async with running_fleet(agencies) as (fleet, pointed):
        async with query_app(tmp_path, pointed, deadline=6.0, store=store, schema=schema) as first:
            tokens = first.tokens
            case = await open_case(first)
            query = await submit(first, case["id"])
            await asyncio.sleep(0.3)  # requests in flight at every agency
        # the server is gone; the agencies finish what they received meanwhile
        seen_before = sum(sum(sim.stats.new_requests.values()) for sim in fleet.simulators.values())
        assert 0 < seen_before < len(query["jobs"])
        async with query_app(tmp_path, pointed, deadline=6.0, store=store, schema=schema, tokens=tokens) as second:
            done = await wait_complete(second, query["id"], within=20)
            assert done["completed_ms"] <= done["deadline_ms"] + 500
            assert {j["status"] for j in done["jobs"]} <= {"answered", "no_assets"}
            for job in done["jobs"]:
                stats = fleet[job["agency_id"]].stats
                assert stats.new_requests[job["job_id"]] == 1, job  # never a new request twice
            replays = sum(sum(sim.stats.replays.values()) for sim in fleet.simulators.values())
            assert replays >= 1  # the ones in flight at the crash were collected by replay
            jobs = await second.store.query_jobs(QueryId(query["id"]))
            assert all(j.status in (JobStatus.ANSWERED, JobStatus.NO_ASSETS) for j in jobs)


async def test_a_query_resumed_after_its_deadline_reports_it(tmp_path: Path) -> None:
    agencies = test_agencies({a.id: {"latency_median_ms": 3000, "latency_sigma": 0.0} for a in test_agencies()})
    async with running_fleet(agencies) as (_, pointed):
        async with query_app(tmp_path, pointed, deadline=0.8) as first:
            tokens = first.tokens
            case = await open_case(first)
            query = await submit(first, case["id"], agency_ids=["icbc", "ccb"])
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.8)  # down past the deadline
        async with query_app(tmp_path, pointed, deadline=0.8, tokens=tokens) as second:
            done = await wait_complete(second, query["id"], within=3)
            assert {j["status"] for j in done["jobs"]} == {"timed_out"}


async def test_throttling_is_retried_and_does_not_open_the_circuit(tmp_path: Path) -> None:
    """An agency that accepts one request at a time (we think four): its 429s are retried, and being busy
    is not being broken, so the circuit stays closed."""
    agencies = test_agencies({"icbc": {"latency_median_ms": 200, "latency_sigma": 0.0}}, breaker_failures=2)
    strict = [a.model_copy(update={"concurrency": 1}) if a.id == "icbc" else a for a in agencies]
    async with running_fleet(strict) as (fleet, _):
        pointed = [
            a.model_copy(update={"endpoint": fleet[a.id].url, "concurrency": 4, "retries": 6, "backoff_ms": 300.0})
            for a in agencies
        ]
        async with query_app(tmp_path, pointed) as world:
            case = await open_case(world)
            # submitted together, so they overlap at the agency even on a loaded machine
            queries = await asyncio.gather(*(submit(world, case["id"], agency_ids=["icbc"]) for _ in range(3)))
            results = [await wait_complete(world, q["id"]) for q in queries]
            assert fleet["icbc"].stats.injected["throttled"] >= 2
            assert fleet["icbc"].stats.max_in_flight == 1
            jobs = [j for r in results for j in r["jobs"]]
            assert {j["status"] for j in jobs} <= {"answered", "no_assets"}, [j["error"] for j in jobs]
            circuit = {
                a["id"]: a["circuit"]
                for a in (await (await world.client.get("/api/agencies", headers=world.auth("judge"))).json())[
                    "agencies"
                ]
            }
            assert circuit["icbc"] == "closed"


async def test_an_agency_that_hangs_mid_answer_does_not_hold_the_query(tmp_path: Path) -> None:
    """The agency answers 200 and then drips its body a couple of bytes a second: the query still completes at
    its deadline, the hung call is cut by the agency's timeout and the job stays timed out."""
    agencies = test_agencies({"csdc": {"drip_bytes_per_second": 2}}, timeout_seconds=2.5, retries=0)
    async with running_fleet(agencies) as (fleet, pointed), query_app(tmp_path, pointed, deadline=1.5) as world:
        case = await open_case(world)
        started = time.monotonic()
        query = await submit(world, case["id"], party_ids=[case["parties"][0]["id"]])
        screen = await open_query_screen(world, query["id"])
        await screen.pump(lambda s: s.complete, within=5)
        assert 1.4 < time.monotonic() - started < 2.2  # on time, not at the hung agency's pace
        hung = next(j for j in screen.jobs.values() if j["agency_id"] == "csdc")
        assert hung["status"] == "timed_out"
        assert fleet["csdc"].stats.injected["drip"] >= 1  # it really was answering, slowly
        others = [j for j in screen.jobs.values() if j["agency_id"] != "csdc"]
        assert all(j["status"] in ("answered", "no_assets") for j in others)
        await asyncio.sleep(1.5)  # past the agency's 2.5 s timeout: the call was cut, the verdict stands
        final = {j["agency_id"]: j for j in (await get_query(world, query["id"]))["jobs"]}
        assert final["csdc"]["status"] == "timed_out"
