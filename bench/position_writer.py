"""Position-writer benchmark: N units' positions at 1 Hz through ``PositionWriter`` into PostgreSQL, each unit
waiting for its ack as on the unit socket; the writer's settings compared, interleaved in one process.

    python -m bench.position_writer --units 10000 --seconds 10 --rounds 2

The unit socket's ack waits for its position's commit (docs/protocols.md), so how the writer batches decides the
ack latency and how many sockets one commit wakes at once. This isolates that from the sockets, the screens and
the load generator (bench/telemetry.py measures them all together; on a busy shared machine its figures are the
machine's): every configuration runs in this process, against the same database, in turn, ``--rounds`` times.
Printed per configuration: positions committed per second, ack p50/p99/max (the unit's ``write`` call) and the
event loop's lag p99/max (a 10 ms timer in the same loop: what a commit's answers cost every other task).

Configurations: ``one flush`` is the writer before issue 14's round 3 (one batch of up to 5,000 committed at a
time, all its callers answered in one turn of the loop); ``parallel`` the shipped defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, fresh_store_url, percentile, tune_gc
from command_center.bootstrap import import_courts
from config.settings import StoreSettings
from core.ids import CourtId, UnitId
from field_units.writer import PositionWriter
from persistence.factory import build_store
from persistence.models import Position, UnitKind
from persistence.port import Store

BENCH_DB = "cc_bench_writer"
CONFIGS: dict[str, dict[str, Any]] = {
    "one flush": {"max_batch": 5_000, "max_flushes": 1, "answer_slice": 1_000_000},
    "parallel": {},
}


async def register(store: Store, units: int) -> None:
    await import_courts(store, ROOT / "config" / "courts.toml")
    for first in range(0, units, 50):
        await asyncio.gather(*(
            store.add_unit(unit_id=UnitId(f"W{i:05d}"), name=f"W{i}", kind=UnitKind.HANDHELD,
                           court_id=CourtId("HLJ0102"), secret_hash=f"s-{i}")
            for i in range(first, min(units, first + 50))
        ))  # fmt: skip


async def run(store: Store, config: dict[str, Any], units: int, seconds: float, seq0: int) -> dict[str, Any]:
    writer = PositionWriter(store, **config)
    await writer.start()
    acks: list[float] = []
    lags: list[float] = []
    stop = time.monotonic() + seconds
    rng = random.Random(7)

    async def unit(i: int) -> None:
        seq = seq0
        await asyncio.sleep(rng.uniform(0, 1))  # spread over the second, as units are
        next_at = time.monotonic()
        while time.monotonic() < stop:
            seq += 1
            now = int(time.time() * 1000)
            sent = time.perf_counter()
            await writer.write([Position(UnitId(f"W{i:05d}"), seq, now, 45.75, 126.64, 5.0, 1.4, 90.0, None, 77.0,
                                         False, now)])  # fmt: skip
            acks.append((time.perf_counter() - sent) * 1000)
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def probe() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(max(0.0, (time.perf_counter() - asked - 0.01) * 1000))

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    await asyncio.gather(*(unit(i) for i in range(units)))
    elapsed = time.monotonic() - started
    prober.cancel()
    await writer.close()
    return {"per_s": len(acks) / elapsed, "ack": [percentile(acks, 50), percentile(acks, 99), max(acks)],
            "lag": [percentile(lags, 99), max(lags)]}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = await fresh_store_url("postgres", Path(tmp), BENCH_DB)
        store = build_store(StoreSettings(url=url, pool_max=10))
        await store.open()
        try:
            await store.migrate()
            await register(store, args.units)
            tune_gc()
            print(f"{args.units} units at 1 Hz, {args.seconds:.0f} s a run, configurations interleaved")
            print(f"{'round':>5} {'writer':<10} {'stored/s':>8} {'ack p50':>8} {'p99':>7} {'max':>7} "
                  f"{'loop lag p99':>12} {'max':>6}")  # fmt: skip
            seq0 = 0
            for round_ in range(1, args.rounds + 1):
                for name, config in CONFIGS.items():
                    got = await run(store, config, args.units, args.seconds, seq0)
                    seq0 += int(args.seconds) + 2
                    ack, lag = got["ack"], got["lag"]
                    print(f"{round_:>5} {name:<10} {got['per_s']:>8.0f} {ack[0]:>6.0f}ms {ack[1]:>5.0f}ms "
                          f"{ack[2]:>5.0f}ms {lag[0]:>10.0f}ms {lag[1]:>4.0f}ms", flush=True)  # fmt: skip
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
