"""Asset-query benchmark: Q concurrent queries × 18 agencies, through the real server, to the judge's screen.

    python -m bench.queries --queries 10,50,200

The command centre runs as a real process (pinned to core 0), the 18 agency simulators as another
process (core 1) with the latency profiles of ``config/agencies.toml`` (lognormal with tails, the
configured concurrency limits), and the judges' load (HTTP submits, one screen socket per query) in this
process. Each query asks about one person at all 18 agencies. Printed per Q:

- feedback: submit → the screen has every agency's final status and the query's completion (p50/p99);
- baseline: the same query's bare fan-out (below), p50/p99, and feedback p99 ÷ baseline p99;
- broker overhead, as the target defines it: the screen learnt the query was complete − the slowest
  agency's answer reached the broker (p50/p99; queries with a failed or timed-out agency are left out);
- Δ vs bare: feedback − the same query's bare fan-out (p50/p99; paired: the same person meets the same
  simulated latencies in both), which also counts submitting, persisting and sending;
- answer→screen: an agency's answer reached the broker → the judge's screen received it (p99);
- queries/s, and the share of queries whose feedback was complete within the 30 s deadline.

Each level runs ``--rounds`` times (samples pooled), after one unmeasured warm-up round of the largest
level for both sides (connections to the agencies are long-lived in service).

Baseline, measured in the same run against the same simulators: a bare ``asyncio.gather`` of the same
18 agency calls per query (per-agency semaphores, since the agencies throttle beyond their limit), with
no persistence, retries, breaker or streaming.

The target is stated for Q×18 calls in flight, so by default every agency admits Q concurrent requests
(``--throttled`` keeps the shipped limits of 2–8, where queueing at the agencies dominates) and the
simulators play latencies only (``--faults`` adds their error rates, malformed replies and drips: the
broker retries those and the bare baseline does not, so the paired difference is then no longer overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import (
    ROOT,
    Server,
    answers,
    free_port,
    fresh_store_url,
    lag_line,
    loop_lag,
    loop_lag_env,
    percentile,
)
from command_center.bootstrap import import_courts
from command_center.credentials import Passwords
from command_center.loop_lag import FLUSH_EVERY
from config.settings import AuthSettings, StoreSettings
from core.ids import CourtId
from persistence.factory import build_store
from persistence.models import Role
from persistence.query_models import PartyKind
from query_control.agencies import DEFAULT_AGENCIES_FILE
from query_control.identifiers import make_id_number

DEADLINE_S = 30.0
BENCH_DB = "cc_bench_queries"
PASSWORD = "bench judge password"
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


FAULTS = ("error_rate", "malformed_rate", "outage", "drip_bytes_per_second")


def write_agencies(path: Path, *, concurrency: int | None, faults: bool) -> dict[str, Any]:
    """The shipped agencies on free ports (TOML rewritten with the new endpoints), with every
    agency's concurrency set to ``concurrency`` unless None, and the simulators' faults dropped unless ``faults``."""
    data = tomllib.loads(DEFAULT_AGENCIES_FILE.read_text(encoding="utf-8"))
    if concurrency is not None:
        data["defaults"]["concurrency"] = concurrency
    lines = ["[defaults]"] + [f"{k} = {json.dumps(v)}" for k, v in data["defaults"].items()]
    for agency in data["agency"]:
        agency["endpoint"] = f"http://127.0.0.1:{free_port()}"
        if concurrency is not None:
            agency.pop("concurrency", None)
        if not faults:
            agency["simulator"] = {k: v for k, v in agency.get("simulator", {}).items() if k not in FAULTS}
        lines.append("\n[[agency]]")
        for key, value in agency.items():
            if key == "simulator":
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"simulator = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def _identifier(i: int) -> str:
    return make_id_number("230102", date(1980 + i // 1000, 1, 1 + i % 28), i % 1000)


async def prepare(url: str, parties: int) -> list[tuple[int, int]]:
    """A judge and ``parties`` cases of one debtor each; (case id, party id) per person."""
    store = build_store(StoreSettings(url=url))
    await store.open()
    await store.migrate()
    await import_courts(store, ROOT / "config" / "courts.toml")
    judge = await store.add_user(
        username="bench-judge",
        display_name="bench",
        password_hash=Passwords(FAST_AUTH).hash(PASSWORD),
        role=Role.JUDGE,
        court_id=CourtId("HLJ01"),
    )
    cases: list[tuple[int, int]] = []
    for i in range(parties):
        case = await store.add_case(
            case_number=f"(2026)黑01执{i + 1}号",
            court_id=CourtId("HLJ01"),
            title="bench",
            created_by=judge.id,
            created_ms=0,
            parties=[(PartyKind.PERSON, f"被执行人{i}", _identifier(i))],
            judge_ids=[judge.id],
        )
        cases.append((case.id, case.parties[0].id))
    await store.close()
    return cases


async def simulators_ready(agencies: list[dict[str, Any]], alive: Callable[[], bool], within: float = 60.0) -> None:
    """Until every agency simulator answers its health check (a cold start takes a few seconds)."""
    for agency in agencies:
        if not await answers(f"{agency['endpoint']}/v1/health", within, alive=alive):
            raise RuntimeError(f"agency simulator {agency['id']} did not start")


@dataclass
class Outcome:
    feedback_s: float  # submit → every agency's final status (or the deadline's verdict) on the screen
    to_screen_ms: list[float]  # per answer: reached the broker → received by the screen
    overhead_ms: float | None  # the screen learnt of completion − the slowest answer reached the broker
    failed: list[str]  # why, per failed job


async def one_query(http: aiohttp.ClientSession, base: str, token: str, case_id: int, party_id: int) -> Outcome:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.time()
    body = {"case_id": case_id, "reason": "基准测试查控", "party_ids": [party_id]}
    async with http.post(f"{base}/api/queries", json=body, headers=headers) as response:
        assert response.status == 202, await response.text()
        query = await response.json()
    jobs: dict[str, dict[str, Any]] = {j["job_id"]: j for j in query["jobs"]}
    to_screen: list[float] = []
    complete = False
    async with http.ws_connect(
        f"{base.replace('http', 'ws')}/api/screen/ws", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send_json({"type": "subscribe", "topics": [f"query:{query['id']}"]})
        while not complete:
            message = await ws.receive(timeout=90)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = message.json()
            received_ms = time.time() * 1000
            if data["type"] == "snapshot":
                jobs.update({j["job_id"]: j for j in data["query"]["jobs"]})
                complete = data["query"]["complete"]
            elif data["type"] == "query_update" and data["event"] == "job":
                job = data["job"]
                jobs[job["job_id"]] = job
                if job["answered_ms"] is not None:
                    to_screen.append(received_ms - job["answered_ms"])
            elif data["type"] == "query_update" and data["event"] == "complete":
                complete = True
    done_ms = time.time() * 1000
    failed = [f"{j['agency_id']}: {j['error']}" for j in jobs.values() if j["status"] == "failed"]
    answers = [j["answered_ms"] for j in jobs.values()]
    overhead = None if None in answers else done_ms - max(answers)
    return Outcome(done_ms / 1000 - started, to_screen, overhead, failed)


async def baseline_query(
    http: aiohttp.ClientSession, agencies: list[dict[str, Any]], limits: dict[str, asyncio.Semaphore], identifier: str
) -> float:
    """The same 18 calls, bare: gather, per-agency semaphores, nothing stored or streamed, no retries."""

    async def call(agency: dict[str, Any]) -> None:
        key = uuid.uuid4().hex
        body = {"request_id": key, "subject": {"kind": "person", "name": "x", "identifier": identifier}}
        headers = {"Authorization": f"Bearer {agency['api_key']}", "Idempotency-Key": key}
        async with limits[agency["id"]], http.post(f"{agency['endpoint']}/v1/query", json=body, headers=headers) as r:
            await r.read()

    started = time.time()
    await asyncio.gather(*(call(a) for a in agencies), return_exceptions=True)
    return time.time() - started


async def measure(
    http: aiohttp.ClientSession,
    base_url: str,
    token: str,
    cases: list[tuple[int, int]],
    people: Iterator[int],
    agencies: list[dict[str, Any]],
    count: int,
) -> tuple[list[Outcome], list[float], float]:
    """One round: ``count`` queries through the server, then the same people bare; (outcomes, bare, wall)."""
    mine = [next(people) for _ in range(count)]
    began = time.time()
    results = await asyncio.gather(*(one_query(http, base_url, token, *cases[i]) for i in mine))
    wall = time.time() - began
    limits = {a["id"]: asyncio.Semaphore(a["concurrency"]) for a in agencies}
    base = await asyncio.gather(*(baseline_query(http, agencies, limits, _identifier(i)) for i in mine))
    return results, base, wall


async def run(args: argparse.Namespace) -> None:
    counts = [int(q) for q in args.queries.split(",")]
    with tempfile.TemporaryDirectory(prefix="cc-bench-queries-") as tmp:
        folder = Path(tmp)
        agencies_file = folder / "agencies.toml"
        concurrency = None if args.throttled else max(counts)
        data = write_agencies(agencies_file, concurrency=concurrency, faults=args.faults)
        agencies = [{**data["defaults"], **a} for a in data["agency"]]
        sims_command = [sys.executable, "-m", "simulators.agencies", "--agencies", str(agencies_file)]
        if (os.cpu_count() or 1) > 1:
            sims_command = ["taskset", "-c", "1", *sims_command]
        sims_log = folder / "simulators.log"
        with sims_log.open("wb") as log:
            simulators = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
                sims_command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        total = sum(counts) * args.rounds + max(counts)
        url = await fresh_store_url(args.store, folder, BENCH_DB)
        cases = await prepare(url, total)
        port = free_port()
        server = Server(
            {
                "CC_STORE__URL": url,
                "CC_BUS__URL": args.bus,
                "CC_DATA_DIR": str(folder),
                "CC_QUERIES__AGENCIES_FILE": str(agencies_file),
                # One account stands for many judges here: its per-judge limits and the abuse watch's thresholds
                # are lifted (the watch still reads the judge's recent queries on every submission).
                "CC_QUERIES__MAX_PER_JUDGE_HOUR": "100000",
                "CC_QUERIES__MAX_PER_JUDGE_DAY": "1000000",
                "CC_QUERIES__BURST_QUERIES": "100000",
                "CC_QUERIES__SAME_PERSON_CASES": "1000",
                "CC_QUERIES__NIGHT_START_HOUR": "0",
                "CC_QUERIES__NIGHT_END_HOUR": "0",
                "CC_AUTH__ARGON2_MEMORY_KIB": "8",
                "CC_AUTH__ARGON2_TIME_COST": "1",
                "CC_AUTH__ARGON2_PARALLELISM": "1",
                **loop_lag_env(folder / "loop-lag.jsonl"),
            },
            port=port,
        )
        server.start(folder / "server.log")
        try:
            await server.wait_healthy()
            try:
                await simulators_ready(agencies, alive=lambda: simulators.poll() is None)
            except RuntimeError:
                print(sims_log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                async with http.post(
                    f"{server.url}/api/auth/login", json={"username": "bench-judge", "password": PASSWORD}
                ) as response:
                    token = (await response.json())["token"]
                limit = "shipped limits" if args.throttled else f"{max(counts)} per agency"
                print(
                    f"store {args.store}, bus {args.bus}, concurrency {limit}, faults {'on' if args.faults else 'off'}"
                )
                print(
                    f"{'Q':>5} {'feedback p50':>12} {'p99':>7} {'baseline p50':>12} {'p99':>7} {'ratio':>6} "
                    f"{'overhead p50':>12} {'p99':>8} {'Δ vs bare p50':>13} {'p99':>6} {'ans→screen p99':>14} "
                    f"{'q/s':>5} {'≤30 s':>6} {'failed':>6}"
                )
                people = iter(range(len(cases)))
                await measure(http, server.url, token, cases, people, agencies, max(counts))  # warm-up
                for count in counts:
                    level_started = time.monotonic()
                    rounds = [
                        await measure(http, server.url, token, cases, people, agencies, count)
                        for _ in range(args.rounds)
                    ]
                    results = [r for results, _, _ in rounds for r in results]
                    base = [b for _, base, _ in rounds for b in base]
                    wall = sum(w for _, _, w in rounds)
                    feedback = [r.feedback_s for r in results]
                    screen = [v for r in results for v in r.to_screen_ms]
                    overhead = [r.overhead_ms for r in results if r.overhead_ms is not None]
                    paired = [f - min(b, DEADLINE_S) for f, b in zip(feedback, base, strict=True)]
                    within = sum(f <= DEADLINE_S for f in feedback) / len(results)
                    reasons = Counter(why.split(" (")[0] for r in results for why in r.failed)
                    ratio = percentile(feedback, 99) / percentile(base, 99)
                    print(
                        f"{count:>5} {percentile(feedback, 50):>11.2f}s {percentile(feedback, 99):>6.2f}s "
                        f"{percentile(base, 50):>11.2f}s {percentile(base, 99):>6.2f}s {ratio:>6.2f} "
                        f"{percentile(overhead, 50):>10.1f}ms {percentile(overhead, 99):>6.1f}ms "
                        f"{percentile(paired, 50) * 1000:>11.0f}ms {percentile(paired, 99) * 1000:>4.0f}ms "
                        f"{percentile(screen, 99):>12.1f}ms {len(results) / wall:>5.1f} {within:>6.0%} "
                        f"{sum(reasons.values()):>6}",
                        flush=True,
                    )
                    await asyncio.sleep(FLUSH_EVERY + 0.1)  # the probe writes a line a second: let it cover the level
                    lag = loop_lag(folder / "loop-lag.jsonl", level_started, time.monotonic())
                    print(f"      server event loop: {lag_line(lag)}", flush=True)
                    if len(overhead) < len(results):
                        print(f"      overhead over {len(overhead)} of {len(results)} queries (the rest had a "
                              "failed or timed-out agency)", flush=True)  # fmt: skip
                    if reasons:
                        print(f"      failed jobs: {dict(reasons.most_common(5))}", flush=True)
        finally:
            server.stop()
            simulators.send_signal(2)
            simulators.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", default="10,100", help="comma-separated numbers of concurrent queries")
    parser.add_argument("--rounds", type=int, default=3, help="times each level runs (samples pooled)")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--bus", default="memory://")
    parser.add_argument("--throttled", action="store_true", help="keep the shipped per-agency concurrency limits")
    parser.add_argument("--faults", action="store_true", help="keep the simulators' errors, malformed replies, drips")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
