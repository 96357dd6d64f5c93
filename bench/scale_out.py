"""Scale-out benchmark: the same telemetry load on 1, 2 and 4 server processes behind nginx, on one PostgreSQL
and one Redis; a table of throughput, unit→screen latency and CPU per position, and what it means for a
province and for the country.

    python -m bench.scale_out                          # 3,000 units at 1 Hz, 30 screens, 1/2/4 processes
    python -m bench.scale_out --units 1500 --processes 1,2

Everything shares this machine's cores (servers, nginx, PostgreSQL, Redis and the load generator), so the
table shows what a process costs, not how far more machines reach: the estimate below it does that
arithmetic from the measured CPU per position. The baseline, measured in the same run, is the embedded
layout: one process on the in-process bus, units and screens connected to it directly (no proxy, no Redis,
no replication between processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.harness import ROOT, cpu_seconds, fresh_store_url, processes_named
from bench.telemetry import prepare, stored_counts

BENCH_DB = "cc_bench_scale_out"
PROVINCE_UNITS, PROVINCE_SCREENS = 800, 30  # the province: 800 units, 30 screens
COUNTRY_UNITS = 3_500 * 15  # about 3,500 courts with enforcement bureaus, 15 units each (an assumption)
HEADROOM = 0.5  # plan processes at half a core each: room for bursts (a backlog after an outage) and a failover


async def run(args: argparse.Namespace, processes: int, workdir: Path, *, embedded: bool) -> dict[str, Any]:
    url = await fresh_store_url("postgres", workdir, BENCH_DB)
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(await prepare(url, args.units)))
    bus = "memory://" if embedded else "redis://127.0.0.1:6379/0"
    cluster = Cluster(workdir, processes=processes, store_url=url, redis_url=bus,
                      env={"CC_CLUSTER__LEASE_SECONDS": "6"})  # fmt: skip
    await cluster.start(proxy=not embedded)
    entry = cluster.servers[0].url if embedded else cluster.url
    try:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.telemetry_load", "--url", entry, "--plan", str(plan_file),
            "--units", str(args.units), "--screens", str(args.screens), "--duration", str(args.duration),
            "--ramp", str(max(3.0, args.units / 1000)), cwd=ROOT, stdout=subprocess.PIPE, limit=64 * 1024 * 1024,
        )  # fmt: skip
        assert load.stdout is not None
        servers = [s.pid for s in cluster.servers]
        others = {name: processes_named(name) for name in ("nginx", "postgres", "redis-server")}
        before: dict[str, float] = {}
        spent: dict[str, float] = {}
        result: dict[str, Any] = {}
        started = 0.0
        async for line in load.stdout:
            message = json.loads(line)
            if message.get("event") == "measuring":
                started = asyncio.get_running_loop().time()
                before = {"servers": cpu_seconds(servers), **{k: cpu_seconds(v) for k, v in others.items()}}
            elif message.get("event") == "measured":
                window = asyncio.get_running_loop().time() - started
                now = {"servers": cpu_seconds(servers), **{k: cpu_seconds(v) for k, v in others.items()}}
                spent = {k: (now[k] - before[k]) / window for k in now}
            else:
                result = message
        await load.wait()
    finally:
        cluster.stop()
    counts = await stored_counts(url)
    last_sent: dict[str, int] = result.pop("last_sent")
    result["lost_in_store"] = sum(max(0, seq - counts.get(unit, 0)) for unit, seq in last_sent.items())
    result["cores"] = spent
    return result


def row(label: str, r: dict[str, Any]) -> str:
    cores = r["cores"]
    total = sum(cores.values())
    per_1000 = cores["servers"] / max(1.0, r["positions_per_s"]) * 1000
    return (f"{label:<22} {r['positions_per_s']:>8.0f} {r['screen_ms']['p50']:>7.0f} {r['screen_ms']['p99']:>7.0f} "
            f"{r['ack_ms']['p99']:>7.0f} {cores['servers']:>7.2f} {cores.get('nginx', 0):>6.2f} "
            f"{cores.get('postgres', 0):>6.2f} {cores.get('redis-server', 0):>6.2f} {total:>6.2f} {per_1000:>9.3f} "
            f"{r['lost_in_store']:>5}")  # fmt: skip


def estimate(per_position: float, screens: int) -> None:
    """Processes needed for a province and for the country, from the measured server CPU per position (which
    includes the fan-out to ``screens`` screens watching the same units: each court's screens watch its own)."""
    print(f"\nestimate (server CPU per position as measured with the most processes, {screens} screens watching; "
          f"1 Hz per unit; a process planned at {HEADROOM:.0%} of a core, two at least):")  # fmt: skip
    for name, units in (("province", PROVINCE_UNITS), ("country", COUNTRY_UNITS)):
        cores = units * per_position
        need = max(2, math.ceil(cores / HEADROOM))
        print(f"  {name:<9} {units:>6} units x {per_position * 1000:.3f} ms of CPU per position = "
              f"{cores:.2f} cores of server -> {need} processes")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--screens", type=int, default=PROVINCE_SCREENS)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    print(f"scale-out benchmark: {args.units} units at 1 Hz, {args.screens} screens, PostgreSQL + Redis + nginx, "
          f"{os.cpu_count()} cores shared by everything")  # fmt: skip
    results: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="cc-scale-") as tmp:
        results.append(("baseline: 1, embedded", await run(args, 1, Path(tmp) / "base", embedded=True)))
        for n in [int(p) for p in args.processes.split(",")]:
            results.append((f"{n} process{'es' if n > 1 else ''} + nginx", await run(args, n, Path(tmp) / str(n),
                                                                                  embedded=False)))  # fmt: skip
    print(f"\n{'layout':<22} {'pos/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ack p99':>7} {'servers':>7} {'nginx':>6} "
          f"{'pg':>6} {'redis':>6} {'total':>6} {'ms/1k pos':>9} {'lost':>5}")  # fmt: skip
    print(f"{'':<22} {'':>8} {'screen':>7} {'screen':>7} {'ms':>7} {'(cores)':>7}")
    for label, result in results:
        print(row(label, result))
    base, widest = results[0][1], results[-1][1]
    cost = widest["cores"]["servers"] / widest["positions_per_s"]
    base_cost = base["cores"]["servers"] / base["positions_per_s"]
    latency = widest["screen_ms"]["p99"] / base["screen_ms"]["p99"]
    print(f"\nratio: {results[-1][0]} vs the embedded baseline: unit->screen p99 {latency:.1f}x, "
          f"server CPU per position {cost / base_cost:.1f}x")  # fmt: skip
    estimate(widest["cores"]["servers"] / widest["positions_per_s"], args.screens)
    print(json.dumps({label: r for label, r in results}), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
