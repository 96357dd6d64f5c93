"""Asset-query benchmark: Q concurrent queries × 18 agencies, through the real server, to the judge's screen.

    python -m bench.queries --queries 10,50,200

The command centre runs as a real process (pinned to core 0), the 18 agency simulators as another
process (core 1) with the latency profiles of ``config/agencies.toml`` (lognormal with tails, the
configured concurrency limits), and the judges' load (HTTP submits, one screen socket per query) in this
process. Each query asks about one person at all 18 agencies. Printed per Q:

- time to complete feedback: submit → the screen has every agency's final status (p50/p99);
- broker overhead: that time minus the same query's bare fan-out in the baseline (p50/p99 of the
  per-run distributions' difference);
- answer→screen: the broker stored an answer → the screen received it (p99);
- queries/s, and the share of queries whose feedback was complete within the 30 s deadline.

Baseline, measured in the same run against the same simulators: a bare ``asyncio.gather`` of the same
18 agency calls per query (per-agency semaphores, since the agencies throttle beyond their limit), with
no persistence, retries, breaker or streaming.
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
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import ROOT, Server, free_port, percentile
from command_center.bootstrap import import_courts
from command_center.credentials import Passwords
from config.settings import AuthSettings, StoreSettings
from core.ids import CourtId
from persistence.factory import build_store
from persistence.models import Role
from persistence.query_models import PartyKind
from query_control.agencies import DEFAULT_AGENCIES_FILE
from query_control.identifiers import make_id_number

DEADLINE_S = 30.0
PASSWORD = "bench judge password"
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


def write_agencies(path: Path, base_port: int) -> dict[str, Any]:
    """The shipped agencies on ports from ``base_port`` (TOML rewritten with the new endpoints)."""
    data = tomllib.loads(DEFAULT_AGENCIES_FILE.read_text(encoding="utf-8"))
    lines = ["[defaults]"] + [f"{k} = {json.dumps(v)}" for k, v in data["defaults"].items()]
    for index, agency in enumerate(data["agency"]):
        agency["endpoint"] = f"http://127.0.0.1:{base_port + index}"
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


async def prepare(db: Path, parties: int) -> list[int]:
    store = build_store(StoreSettings(url=f"sqlite:///{db}"))
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
    people = [(PartyKind.PERSON, f"被执行人{i}", _identifier(i)) for i in range(parties)]
    case = await store.add_case(
        case_number="(2026)黑01执1号",
        court_id=CourtId("HLJ01"),
        title="bench",
        created_by=judge.id,
        created_ms=0,
        parties=people,
        judge_ids=[judge.id],
    )
    await store.close()
    return [case.id, *[p.id for p in case.parties]]


@dataclass
class Outcome:
    feedback_s: float  # submit → every agency's final status (or the deadline's verdict) on the screen
    to_screen_ms: list[float]  # per answer: stored by the broker → received by the screen
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
    async with http.ws_connect(f"{base.replace('http', 'ws')}/api/screen/ws?token={token}") as ws:
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
    failed = [f"{j['agency_id']}: {j['error']}" for j in jobs.values() if j["status"] == "failed"]
    return Outcome(time.time() - started, to_screen, failed)


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


async def run(counts: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="cc-bench-queries-") as tmp:
        folder = Path(tmp)
        sim_port = free_port() + 100
        agencies_file = folder / "agencies.toml"
        data = write_agencies(agencies_file, sim_port)
        agencies = [{**data["defaults"], **a} for a in data["agency"]]
        sims_command = [sys.executable, "-m", "query_control.simulator", "--agencies", str(agencies_file)]
        if (os.cpu_count() or 1) > 1:
            sims_command = ["taskset", "-c", "1", *sims_command]
        simulators = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            sims_command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        total = sum(counts)
        db = folder / "bench.db"
        ids = await prepare(db, total)
        case_id, parties = ids[0], ids[1:]
        port = free_port()
        server = Server(
            {
                "CC_STORE__URL": f"sqlite:///{db}",
                "CC_DATA_DIR": str(folder),
                "CC_QUERIES__AGENCIES_FILE": str(agencies_file),
                "CC_AUTH__ARGON2_MEMORY_KIB": "8",
                "CC_AUTH__ARGON2_TIME_COST": "1",
                "CC_AUTH__ARGON2_PARALLELISM": "1",
            },
            port=port,
        )
        server.start(folder / "server.log")
        try:
            await server.wait_healthy()
            await asyncio.sleep(1.0)  # simulators up
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                async with http.post(
                    f"{server.url}/api/auth/login", json={"username": "bench-judge", "password": PASSWORD}
                ) as response:
                    token = (await response.json())["token"]
                print(
                    f"{'Q':>5} {'feedback p50':>13} {'p99':>7} {'baseline p50':>13} {'p99':>7} {'overhead p50':>13} "
                    f"{'p99':>7} {'ans→screen p99':>15} {'q/s':>6} {'≤30 s':>6} {'failed jobs':>11}"
                )
                offset = 0
                for count in counts:
                    mine = parties[offset : offset + count]
                    first = offset
                    offset += count
                    began = time.time()
                    results = await asyncio.gather(*(one_query(http, server.url, token, case_id, p) for p in mine))
                    wall = time.time() - began
                    limits = {a["id"]: asyncio.Semaphore(a["concurrency"]) for a in agencies}
                    identifiers = [_identifier(i) for i in range(first, first + count)]
                    base = await asyncio.gather(
                        *(baseline_query(http, agencies, limits, ident) for ident in identifiers)
                    )
                    feedback = [r.feedback_s for r in results]
                    screen = [v for r in results for v in r.to_screen_ms]
                    # paired: the same person at the same agencies meets the same simulated latencies in both runs
                    over = [f - min(b, DEADLINE_S) for f, b in zip(feedback, base, strict=True)]
                    within = sum(f <= DEADLINE_S for f in feedback) / count
                    reasons = Counter(why.split(" (")[0] for r in results for why in r.failed)
                    failed = sum(reasons.values())
                    print(
                        f"{count:>5} {percentile(feedback, 50):>12.2f}s {percentile(feedback, 99):>6.2f}s "
                        f"{percentile(base, 50):>12.2f}s {percentile(base, 99):>6.2f}s "
                        f"{percentile(over, 50) * 1000:>11.0f}ms {percentile(over, 99) * 1000:>5.0f}ms "
                        f"{percentile(screen, 99):>13.1f}ms {count / wall:>6.1f} {within:>6.0%} {failed:>11}",
                        flush=True,
                    )
                    if reasons:
                        print(f"      failed jobs: {dict(reasons.most_common(5))}", flush=True)
        finally:
            server.stop()
            simulators.send_signal(2)
            simulators.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", default="10,50", help="comma-separated numbers of concurrent queries")
    args = parser.parse_args()
    asyncio.run(run([int(q) for q in args.queries.split(",")]))


if __name__ == "__main__":
    main()
