"""Telemetry benchmark: N units at 1 Hz into one server process, M screens out; figures and a baseline.

    python -m bench.telemetry --units 5000 --screens 20              # the target
    python -m bench.telemetry --units 5000,10000,15000 --screens 20  # how far beyond

The server runs as a real process pinned to core 0, the load (units and screens) in another process on
core 1. For each load it prints positions/s ingested, unit→screen latency p50/p99, ack latency, the
server's CPU share and memory, and positions lost (sent by units but missing in the store or on a screen).
The baseline, measured in the same run, is a bare ``websockets.broadcast`` of frames of the same shape
to the same number of screens (bench/broadcast_baseline.py).

Two more lines per load:

- ``ack p99 by 5 s``: the ack p99 of each 5-second slice of the window; a run at the edge of its server's core can
  change regime midway (tens or hundreds of ms, then about a second: every unit's position in flight at once).
- ``stalls`` (with ``--stall-trace``): each stall of the server's loop over 50 ms in the window and the code it ran
  meanwhile (``server.stall_trace_file``, command_center/stall_trace.py).
- ``event loop``: the server's event-loop lag p99 and max over the measuring window, sampled every 10 ms
  inside the server process (``server.loop_lag_file``, command_center/loop_lag.py); a stall of the loop
  (a collector pass, a big batch serialised at once) shows here at its full length.
- ``server``: also the share of the window the server's event-loop thread was ready but waited for a core
  (/proc/PID/schedstat): high means other processes shared its core and the run measured the machine.
- ``load generator``: the same lag figures for the load generator's own loop: latencies above are only
  the server's when these are small.
- ``cpu per position``: the server's CPU time per position ingested (fan-out to the screens included),
  against a bare aiohttp WebSocket ingest of the same units' messages (receive, ``orjson.loads``, ack;
  bench/ingest_baseline.py) on the same core, driven by the same load generator without screens right
  after (with that run's load generator CPU share and loop lag max: the baseline is the server's only while
  they are small); and their ratio (target: at most 2x).

The JSON on stderr carries ``ours.loop_lag_ms``, ``ours.server_cpu_us_per_position`` and ``bare_ingest``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from math import nan
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    ProcessSample,
    Server,
    answers,
    cpu_seconds,
    cpu_share,
    free_port,
    fresh_store_url,
    lag_line,
    loop_lag,
    loop_lag_env,
    processes_named,
    sample,
    stalls,
    wait_share,
)
from command_center.bootstrap import import_courts
from command_center.credentials import Passwords, lookup_hash, new_device_secret
from config.settings import AuthSettings, StoreSettings
from core.ids import CourtId, UnitId
from persistence.factory import build_store
from persistence.models import Role, UnitKind

BENCH_DB = "cc_bench_telemetry"
COURTS = ["HLJ0102", "HLJ0103", "HLJ0104", "HLJ0109"]
SCREEN_LOGIN = {"username": "bench-operator", "password": "bench operator password"}


async def prepare(url: str, units: int) -> dict[str, Any]:
    """Migrate, import courts, register the units and an operator at the high court (sees them all)."""
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        await store.migrate()
        await import_courts(store, ROOT / "config" / "courts.toml")
        passwords = Passwords(AuthSettings())
        await store.add_user(username=SCREEN_LOGIN["username"], display_name="压测指挥员",
                             password_hash=passwords.hash(SCREEN_LOGIN["password"]), role=Role.OPERATOR,
                             court_id=CourtId("HLJ"))  # fmt: skip
        secrets: dict[str, str] = {}
        for i in range(units):
            unit_id, secret = f"BENCH-{i:05d}", new_device_secret()
            court = CourtId(COURTS[i % len(COURTS)])
            await store.add_unit(unit_id=UnitId(unit_id), name=f"压测单兵{i}", kind=UnitKind.BODY_CAMERA,
                                 court_id=court, secret_hash=lookup_hash(secret))  # fmt: skip
            secrets[unit_id] = secret
        return {"units": secrets, "screen_login": SCREEN_LOGIN}
    finally:
        await store.close()


async def stored_counts(url: str) -> dict[str, int]:
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        return {u.id: await store.count_positions(u.id) for u in await store.list_units()}
    finally:
        await store.close()


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if (os.cpu_count() or 1) > 1 else command


async def run_level(args: argparse.Namespace, units: int, workdir: Path) -> dict[str, Any]:
    url = await fresh_store_url(args.store, workdir, BENCH_DB)
    plan = await prepare(url, units)
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(plan))
    port = free_port()
    env = {
        "CC_STORE__URL": url,
        "CC_BUS__URL": args.bus,
        "CC_DATA_DIR": str(workdir),
        "CC_CONFIG": "",
        # every simulated unit connects from 127.0.0.1: lift the per-address cap meant for real clients
        "CC_SERVER__MAX_CONNECTIONS_PER_ADDRESS": str(units + 1000),
        **loop_lag_env(workdir / "loop-lag.jsonl"),
        **({"CC_SERVER__STALL_TRACE_FILE": str(workdir / "stalls.jsonl")} if args.stall_trace else {}),
    }
    server = Server(env, port=port, core=0)
    server.start(workdir / f"server-{units}.log")
    try:
        await server.wait_healthy()
        load = await asyncio.create_subprocess_exec(
            *pinned(1, [sys.executable, "-m", "bench.telemetry_load", "--url", server.url, "--plan", str(plan_file),
                        "--units", str(units), "--screens", str(args.screens), "--duration", str(args.duration),
                        "--ramp", str(max(3.0, units / 1000)), "--lag-file", str(workdir / "load-lag.jsonl")]),
            cwd=ROOT, stdout=subprocess.PIPE, limit=64 * 1024 * 1024,
        )  # fmt: skip
        assert load.stdout is not None
        before: ProcessSample | None = None
        database: list[int] = []
        database_before, database_share = (0.0, 0.0), 0.0
        after = load_before = load_after = before
        result: dict[str, Any] = {}
        async for line in load.stdout:
            message = json.loads(line)
            if message.get("event") == "measuring":
                before, load_before = sample(server.pid), sample(load.pid)
                database = processes_named("postgres")
                database_before = (cpu_seconds(database), before.at)
            else:
                result = message
            if message.get("event") == "measured":
                after, load_after = sample(server.pid), sample(load.pid)
                database_share = (cpu_seconds(database) - database_before[0]) / (after.at - database_before[1])
        await load.wait()
    finally:
        server.stop()
    counts = await stored_counts(url)
    last_sent: dict[str, int] = result.pop("last_sent")
    lost_store = sum(max(0, seq - counts.get(unit, 0)) for unit, seq in last_sent.items())
    if before is None or after is None or load_before is None or load_after is None:
        raise RuntimeError("the load generator did not report its measuring window")
    result["server_cpu_share"] = round(cpu_share(before, after), 3)
    result["server_waited_for_cpu_share"] = round(wait_share(before, after), 3)
    result["load_cpu_share"] = round(cpu_share(load_before, load_after), 3)
    result["database_cpu_share"] = round(database_share, 3) if args.store == "postgres" else None
    result["server_rss_mib"] = round(after.rss_mib, 1)
    result["lost_in_store"] = lost_store
    result["stored_total"] = sum(counts.values())
    result["loop_lag_ms"] = loop_lag(workdir / "loop-lag.jsonl", before.at, after.at)
    if args.stall_trace:
        result["stalls"] = stalls(workdir / "stalls.jsonl", before.at, after.at)
    result["load_loop_lag_ms"] = loop_lag(workdir / "load-lag.jsonl", before.at, after.at)
    result["server_cpu_us_per_position"] = round(result["server_cpu_share"] / result["positions_per_s"] * 1e6, 1)
    return result


async def run_ingest_baseline(args: argparse.Namespace, units: int, plan_file: Path) -> dict[str, Any]:
    """A bare aiohttp ingest (bench/ingest_baseline.py) on the same core, driven by the same load generator
    with the same units and no screens: its CPU per position is what receiving, parsing and acking cost."""
    port = free_port()
    lag_file = plan_file.parent / "bare-load-lag.jsonl"
    server = await asyncio.create_subprocess_exec(
        *pinned(0, [sys.executable, "-m", "bench.ingest_baseline", "--port", str(port)]), cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not await answers(f"{url}/api/health", 30):
            raise RuntimeError("the bare ingest baseline did not start")
        load = await asyncio.create_subprocess_exec(
            *pinned(1, [sys.executable, "-m", "bench.telemetry_load", "--url", url, "--plan", str(plan_file),
                        "--units", str(units), "--screens", "0", "--duration", str(args.duration),
                        "--ramp", str(max(3.0, units / 1000)), "--lag-file", str(lag_file)]),
            cwd=ROOT, stdout=subprocess.PIPE, limit=64 * 1024 * 1024,
        )  # fmt: skip
        assert load.stdout is not None
        before = after = load_before = load_after = None
        result: dict[str, Any] = {}
        async for line in load.stdout:
            message = json.loads(line)
            if message.get("event") == "measuring":
                before, load_before = sample(server.pid), sample(load.pid)
            elif message.get("event") == "measured":
                after, load_after = sample(server.pid), sample(load.pid)
            else:
                result = message
        await load.wait()
    finally:
        server.send_signal(2)
        await server.wait()
    if before is None or after is None or load_before is None or load_after is None:
        raise RuntimeError("the load generator did not report its measuring window")
    share = cpu_share(before, after)
    return {
        "waited_for_cpu_share": round(wait_share(before, after), 3),
        "positions_per_s": result["positions_per_s"],
        "ack_ms": result["ack_ms"],
        "cpu_share": round(share, 3),
        # nothing measured (every unit failed to connect: see unit_failures) is reported, not divided by
        "cpu_us_per_position": round(share / result["positions_per_s"] * 1e6, 1) if result["positions_per_s"] else nan,
        "unit_failures": result["unit_failures"],
        # the generator's own cost and stalls: the baseline measures the server only while these are small
        "load_cpu_share": round(cpu_share(load_before, load_after), 3),
        "load_loop_lag_ms": loop_lag(lag_file, before.at, after.at),
    }


async def run_baseline(args: argparse.Namespace, units: int) -> dict[str, Any]:
    port = free_port()
    per_frame = max(1, int(units / 10))  # what our frames carry at 1 Hz and 10 frames/s
    server = await asyncio.create_subprocess_exec(
        *pinned(0, [sys.executable, "-m", "bench.broadcast_baseline", "serve", "--port", str(port),
                    "--screens", str(args.screens), "--per-frame", str(per_frame)]),
        cwd=ROOT,
    )  # fmt: skip
    await asyncio.sleep(1.0)
    clients = await asyncio.create_subprocess_exec(
        *pinned(1, [sys.executable, "-m", "bench.broadcast_baseline", "clients", "--port", str(port),
                    "--screens", str(args.screens)]),
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await clients.communicate()
    await server.wait()
    result: dict[str, Any] = json.loads(out)
    return result


def report(units: int, ours: dict[str, Any], base: dict[str, Any], screens: int, bare: dict[str, Any]) -> None:
    delivered = ours["screen_positions_per_s"] * screens / ours["measuring_screens"]
    offered = ours["positions_per_s"] * screens
    print(f"\n== {units} units at 1 Hz, {screens} screens ({ours['window_s']} s measured)")
    print(f"connected         {ours['connected']} of {units} units in {ours['connect_s']:.1f} s from the first "
          "(the window starts once all are, after the warm-up)")  # fmt: skip
    print(f"ingest            {ours['positions_per_s']:>10.0f} positions/s   (ack p50 {ours['ack_ms']['p50']:.0f} ms, "
          f"p99 {ours['ack_ms']['p99']:.0f} ms)")  # fmt: skip
    by_slice = ", ".join(f"{p99:.0f}" for p99 in ours["ack_ms"]["p99_by_slice"])
    print(
        f"ack p99 by {ours['ack_ms']['slice_s']:.0f} s    {by_slice} ms (each slice of the window: at the edge of "
        "its core a run can flip between a few hundred ms and about a second, every unit's position in flight)"
    )
    print(f"unit -> screen    p50 {ours['screen_ms']['p50']:.0f} ms   p99 {ours['screen_ms']['p99']:.0f} ms   "
          f"max {ours['screen_ms']['max']:.0f} ms")  # fmt: skip
    print(f"to screens        {delivered:>10.0f} positions/s   ({delivered / max(1, offered):.2f} of offered; "
          f"latency decoded on {ours['measuring_screens']} screens, the others read "
          f"{ours['other_screens_mib_per_s']:.1f} MiB/s)")  # fmt: skip
    print(
        f"server            {ours['server_cpu_share'] * 100:.0f}% of one core, {ours['server_rss_mib']:.0f} MiB RSS "
        f"(load generator {ours['load_cpu_share'] * 100:.0f}%, "
        f"PostgreSQL {(ours['database_cpu_share'] or 0) * 100:.0f}%); waited for a core "
        f"{ours['server_waited_for_cpu_share'] * 100:.0f}% of the time (other processes on its core)"
    )
    print(
        f"lost              {ours['lost_in_store']} in the store; units behind on screens at the end: "
        f"{max(ours['units_behind_on_screens'], default=0)}; errors {ours['errors']}, "
        f"rejected {ours['rejected']}, duplicates {ours['duplicates']}, unit failures {ours['unit_failure_count']}"
    )
    lag = ours["loop_lag_ms"]
    print(f"event loop        {lag_line(lag)} (in the server)")
    if "stalls" in ours:
        found = ours["stalls"]
        print(f"stalls over 50 ms {found['count']} (longest {found['max_ms']:.0f} ms, {found['with_gc']} with a "
              "collector pass); sampled most while stalled:")  # fmt: skip
        for count, site in found["sites"]:
            print(f"  {count:>4}  {site}")
    load_lag = ours["load_loop_lag_ms"]
    print(f"load generator    lag p99 {load_lag['p99']:.0f} ms, max {load_lag['max']:.0f} ms, longest collector pass "
          f"{load_lag['gc_max_ms']:.0f} ms (its stalls count in the latencies above)")  # fmt: skip
    ratio = ours["server_cpu_us_per_position"] / bare["cpu_us_per_position"]
    print(f"cpu per position  ours {ours['server_cpu_us_per_position']:.0f} µs; bare aiohttp ingest "
          "(receive, orjson, ack) "
          f"{bare['cpu_us_per_position']:.0f} µs at {bare['positions_per_s']:.0f} positions/s "
          f"(ack p99 {bare['ack_ms']['p99']:.0f} ms, waited for a core {bare['waited_for_cpu_share'] * 100:.0f}%; "
          f"its load generator {bare['load_cpu_share'] * 100:.0f}% of a core, lag max "
          f"{bare['load_loop_lag_ms']['max']:.0f} ms); ratio {ratio:.1f}x")  # fmt: skip
    ceiling = base["flat_positions_per_s"] or float("nan")
    print(
        f"baseline          bare websockets.broadcast, same frames: p50 {base['paced_ms']['p50']:.0f} ms, "
        f"p99 {base['paced_ms']['p99']:.0f} ms at 10 frames/s; ceiling {ceiling:.0f} positions/s to {screens} screens"
    )
    print(
        f"ratio             ours/baseline p99 latency {ours['screen_ms']['p99'] / base['paced_ms']['p99']:.1f}x; "
        f"our fan-out is {delivered / ceiling:.3f} of the bare broadcast's ceiling"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", default="5000", help="comma-separated loads, e.g. 5000,10000")
    parser.add_argument("--screens", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--bus", default="memory://")
    parser.add_argument("--stall-trace", action="store_true",
                        help="run the server's stall tracer (server.stall_trace_file) and print what the loop ran "
                             "in the stalls of the measuring window")  # fmt: skip
    args = parser.parse_args()
    print(f"telemetry benchmark: store={args.store} bus={args.bus} cores={os.cpu_count()} "
          "(server on core 0, load on core 1)")  # fmt: skip
    for units in [int(u) for u in args.units.split(",")]:
        with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
            ours = await run_level(args, units, Path(tmp))
            bare = await run_ingest_baseline(args, units, Path(tmp) / "plan.json")
        base = await run_baseline(args, units)
        report(units, ours, base, args.screens, bare)
        print(json.dumps({"units": units, "ours": ours, "baseline": base, "bare_ingest": bare}), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
