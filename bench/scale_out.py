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
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.harness import ROOT, cpu_seconds, fresh_store_url, loop_lag, processes_named
from bench.telemetry import prepare, stored_counts
from command_center.loop_lag import FLUSH_EVERY

BENCH_DB = "cc_bench_scale_out"
PROVINCE_UNITS, PROVINCE_SCREENS = 800, 30  # the province: 800 units, 30 screens
COUNTRY_UNITS = 3_500 * 15  # about 3,500 courts with enforcement bureaus, 15 units each (an assumption)
PROVINCES = 32  # 31 provincial high courts and the Xinjiang Production and Construction Corps branch
LARGEST_PROVINCE_UNITS = 5_000  # an assumption: a populous province (about 200 courts)
HEADROOM = 0.5  # plan processes at half a core each: room for bursts (a backlog after an outage) and a failover


async def run(args: argparse.Namespace, processes: int, workdir: Path, *, embedded: bool) -> dict[str, Any]:
    url = await fresh_store_url("postgres", workdir, BENCH_DB)
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(await prepare(url, args.units)))
    bus = "memory://" if embedded else "redis://127.0.0.1:6379/0"
    cluster = Cluster(workdir, processes=processes, store_url=url, redis_url=bus,
                      env={"CC_CLUSTER__LEASE_SECONDS": "6"}, per_address=args.units + 1_000,
                      sample_loop_lag=True, connections=min(files_needed(args.units), open_files()))  # fmt: skip
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
        others: dict[str, list[int]] = {}
        before: dict[str, float] = {}
        spent: dict[str, float] = {}
        result: dict[str, Any] = {}
        started = window_from = window_to = 0.0
        async for line in load.stdout:
            message = json.loads(line)
            if message.get("event") == "measuring":
                started = asyncio.get_running_loop().time()  # after the ramp: every connection is open
                window_from = time.monotonic()
                others = {name: processes_named(name) for name in ("nginx", "postgres", "redis-server")}
                before = {"servers": cpu_seconds(servers), **{k: cpu_seconds(v) for k, v in others.items()}}
            elif message.get("event") == "measured":
                window = asyncio.get_running_loop().time() - started
                window_to = time.monotonic()
                now = {"servers": cpu_seconds(servers), **{k: cpu_seconds(v) for k, v in others.items()}}
                spent = {k: (now[k] - before[k]) / window for k in now}
            else:
                result = message
        await load.wait()
        await asyncio.sleep(FLUSH_EVERY + 0.1)  # each server's loop-lag probe writes a line a second
    finally:
        cluster.stop()
    # the worst of the processes: a stall in any one of them is what its units and screens saw
    lags = [loop_lag(cluster.lag_file(i), window_from, window_to) for i in range(len(cluster.servers))]
    result["loop_lag_ms"] = max(lags, key=lambda lag: lag["max"])
    counts = await stored_counts(url)
    last_sent: dict[str, int] = result.pop("last_sent")
    result["lost_in_store"] = sum(max(0, seq - counts.get(unit, 0)) for unit, seq in last_sent.items())
    result["cores"] = spent
    return result


def files_needed(units: int) -> int:
    """Open files for ``units`` units in each process that holds them all: nginx holds two a unit."""
    return 2 * units + 4_096


def open_files() -> int:
    """This process's open-file limit, which the processes it starts inherit."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-file limit (soft and, where allowed, hard) to ``wanted`` for it and the processes
    it starts; the limit now. At 20,000 units the machine's 20,000 left the embedded server refusing 532
    units (503: its connection cap is the limit less a reserve) and nginx resetting 1,600-2,300 handshakes,
    and the table then showed pos/s of the units that got in."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):  # raising the hard limit needs CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def row(label: str, r: dict[str, Any]) -> str:
    cores = r["cores"]
    total = sum(cores.values())
    per_1000 = cores["servers"] / max(1.0, r["positions_per_s"]) * 1000
    return (f"{label:<22} {r['connected']:>6} {r['positions_per_s']:>8.0f} {r['screen_ms']['p50']:>7.0f} "
            f"{r['screen_ms']['p99']:>7.0f} {r['ack_ms']['p99']:>7.0f} {cores['servers']:>7.2f} "
            f"{cores.get('nginx', 0):>6.2f} {cores.get('postgres', 0):>6.2f} {cores.get('redis-server', 0):>6.2f} "
            f"{total:>6.2f} {per_1000:>9.3f} "
            f"{r['lost_in_store']:>5} {r['loop_lag_ms']['p99']:>5.0f}/{r['loop_lag_ms']['max']:.0f}")  # fmt: skip


def estimate(per_position: float, processes: int, screens: int) -> None:
    """Processes needed for a province and for the country, from the measured server CPU per position (which
    includes the fan-out to ``screens`` screens: each court's screens watch its own units)."""
    print(f"\nestimate, from the server CPU per position measured with {processes} processes and {screens} screens "
          f"({per_position * 1000:.3f} ms), 1 Hz per unit, a process planned at {HEADROOM:.0%} of a core and two "
          "at least (one may fail):")  # fmt: skip
    for name, units in (("province", PROVINCE_UNITS), ("largest province", LARGEST_PROVINCE_UNITS)):
        cores = units * per_position
        print(f"  {name:<17} {units:>6} units x {per_position * 1000:.3f} ms = {cores:.2f} cores -> "
              f"{max(2, math.ceil(cores / HEADROOM))} processes")  # fmt: skip
    average = COUNTRY_UNITS / PROVINCES
    per_province = max(2, math.ceil(average * per_position / HEADROOM))
    print(f"  country           {COUNTRY_UNITS} units in {PROVINCES} provincial deployments (each high court runs its "
          f"own centre), {average:.0f} units each on average = {average * per_position:.2f} cores -> "
          f"{per_province} processes each, about {per_province * PROVINCES} in all; one country-wide cluster is not "
          "the design (every process hosting a court's screens receives that court's frames)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--screens", type=int, default=PROVINCE_SCREENS)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    files = raise_open_files(files_needed(args.units))
    print(f"scale-out benchmark: {args.units} units at 1 Hz, {args.screens} screens, PostgreSQL + Redis + nginx, "
          f"{os.cpu_count()} cores shared by everything; open files {files} a process")  # fmt: skip
    if files < files_needed(args.units):
        print(f"  (fewer than the {files_needed(args.units)} this load needs: some units will not connect; the "
              "units column shows how many did)")  # fmt: skip
    results: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="cc-scale-") as tmp:
        layouts = [("baseline: 1, embedded", 1, True)]
        layouts += [
            (f"{n} process{'es' if n > 1 else ''} + nginx", n, False) for n in map(int, args.processes.split(","))
        ]
        for label, processes, embedded in layouts:
            workdir = Path(tmp) / label.split(" ")[0].rstrip(":")
            workdir.mkdir()
            results.append((label, await run(args, processes, workdir, embedded=embedded)))
    print(f"\n{'layout':<22} {'units':>6} {'pos/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ack p99':>7} {'servers':>7} "
          f"{'nginx':>6} {'pg':>6} {'redis':>6} {'total':>6} {'ms/1k pos':>9} {'lost':>5} {'loop lag':>9}")  # fmt: skip
    print(f"{'':<22} {'in':>6} {'':>8} {'screen':>7} {'screen':>7} {'ms':>7} {'(cores)':>7} {'':>6} {'':>6} {'':>6} "
          f"{'':>6} {'':>9} {'':>5} {'p99/max ms':>9}")  # fmt: skip
    for label, result in results:
        print(row(label, result))
    base, widest = results[0][1], results[-1][1]
    cost = widest["cores"]["servers"] / widest["positions_per_s"]
    base_cost = base["cores"]["servers"] / base["positions_per_s"]
    latency = widest["screen_ms"]["p99"] / base["screen_ms"]["p99"]
    print(f"\nratio: {results[-1][0]} vs the embedded baseline: unit->screen p99 {latency:.1f}x, "
          f"server CPU per position {cost / base_cost:.1f}x")  # fmt: skip
    label, sized = next(((lb, r) for lb, r in results if lb.startswith("2 ")), results[-1])  # production's shape
    processes = 1 if label.startswith("baseline") else int(label.split()[0])
    estimate(sized["cores"]["servers"] / sized["positions_per_s"], processes, args.screens)
    print(json.dumps({label: r for label, r in results}), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
