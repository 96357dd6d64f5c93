"""In-process harness of the live fan-out: the real Tracker, MemoryBus, UnitsFeeds and ScreenConnections,
with the store, writer, alarm desk and sockets faked; N units at 1 Hz, M screens watching every court.

    python -m bench.fanout_gc --units 10000 --screens 20 --duration 15

No network and no database: what it measures is what the tracker's publishing, the bus, the feeds and the
screens' queues cost, and what the garbage collector walks because of them. Printed as one JSON line: CPU
per position (process CPU over the window; the in-process load — parse, ingest — included), each collector
pass (generation, objects collected, duration), the event loop's lag (max, p99), and once, the types most
found in the older generations. Compare runs back to back: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from command_center.cli import COLLECTOR_THRESHOLDS
from command_center.screens.connection import ScreenConnection
from command_center.screens.feeds import UnitsFeed
from config.settings import TrackingSettings
from core.ids import CourtId, UnitId
from event_bus.memory import MemoryBus
from field_units.tracker import Tracker
from persistence.models import Position, Unit, UnitKind, UnitState

COURTS = [CourtId(c) for c in ("HLJ0102", "HLJ0103", "HLJ0104", "HLJ0109")]


class _Store:
    def __init__(self, units: list[Unit]) -> None:
        self._units = {u.id: u for u in units}

    async def list_units(self, court_ids: list[CourtId] | None = None) -> list[Unit]:
        return [u for u in self._units.values() if court_ids is None or u.court_id in court_ids]

    async def unit_states(self, ids: list[UnitId] | None = None) -> dict[UnitId, UnitState]:
        return {}

    async def latest_positions(self, ids: list[UnitId] | None = None) -> dict[UnitId, Position]:
        return {}

    async def save_unit_state(self, unit_id: UnitId, state: UnitState) -> None:
        return None

    async def get_unit(self, unit_id: UnitId) -> Unit:
        return self._units[unit_id]


class _Writer:
    async def write(self, positions: list[Position]) -> set[tuple[UnitId, int]]:
        return {(p.unit_id, p.seq) for p in positions}


class _Alarms:
    async def raise_(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def clear(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Socket:
    closed = False

    async def send_frame(self, data: bytes, opcode: Any) -> None:
        return None


class _Passes:
    def __init__(self) -> None:
        self.passes: list[tuple[int, int, float, int]] = []  # generation, collected, ms, objects walked
        self._started = 0.0
        self._walked = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            g = info["generation"]
            self._walked = sum(len(gc.get_objects(i)) for i in range(g + 1)) if self.count_walked else 0
            self._started = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._started) * 1000
            self.passes.append((info["generation"], info["collected"], ms, self._walked))

    count_walked = False


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--screens", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--walked", action="store_true", help="count the objects each pass walks (slow)")
    args = parser.parse_args()
    now = datetime.now(UTC)
    units = [
        Unit(UnitId(f"BENCH-{i:05d}"), f"压测单兵{i}", UnitKind.BODY_CAMERA, COURTS[i % 4], None, now)
        for i in range(args.units)
    ]
    store = _Store(units)
    bus = MemoryBus()
    tracker = Tracker(store, bus, _Writer(), TrackingSettings(), _Alarms())  # type: ignore[arg-type]
    feeds = [UnitsFeed(c, bus, store) for c in COURTS]  # type: ignore[arg-type]
    for feed in feeds:
        await feed.start()
    await tracker.start()
    sockets = [_Socket() for _ in range(args.screens)]
    screens = [ScreenConnection(ws, max_queue=256, label="s", abort=lambda: None) for ws in sockets]  # type: ignore[arg-type]
    writers = [asyncio.create_task(s.write_forever()) for s in screens]
    for s in screens:
        for feed in feeds:
            feed.attach(s, None)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    passes = _Passes()
    passes.count_walked = args.walked
    gc.callbacks.append(passes)
    rng = random.Random(1)
    # plain dicts of numbers: the harness's own state must not add tracked objects per unit
    lats = {u.id: 45.757 + rng.uniform(-0.08, 0.08) for u in units}
    lons = {u.id: 126.642 + rng.uniform(-0.12, 0.12) for u in units}
    seqs = dict.fromkeys(lats, 0)
    lags: list[float] = []
    stop = False

    async def sample_lag() -> None:
        while not stop:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - asked - 0.01) * 1000)

    async def drive() -> None:
        slot = 0.01
        per_slot = max(1, round(args.units * slot))
        i = 0
        while not stop:
            started = time.perf_counter()
            for _ in range(per_slot):
                unit = units[i % len(units)]
                i += 1
                seqs[unit.id] += 1
                lats[unit.id] += rng.uniform(-1e-4, 1e-4)
                sent = int(time.time() * 1000)
                message = {"seq": seqs[unit.id], "fix_time_ms": sent, "lat": lats[unit.id], "lon": lons[unit.id],
                           "accuracy_m": 5.0, "speed_mps": 1.2, "heading_deg": 90.0, "battery_pct": 80.0}  # fmt: skip
                await tracker.ingest(unit, message)
                positions[0] += 1
            await asyncio.sleep(max(0.0, slot - (time.perf_counter() - started)))

    positions = [0]
    tasks = [asyncio.create_task(sample_lag()), asyncio.create_task(drive())]
    await asyncio.sleep(args.warmup)
    old = Counter(type(o).__name__ for g in (0, 1, 2) for o in gc.get_objects(g))
    young = len(gc.get_objects(0))
    passes.passes.clear()
    lags.clear()
    positions[0] = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(args.duration)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stop = True
    got = positions[0]
    by_gen: dict[int, list[float]] = {}
    for g, _collected, ms, _walked in passes.passes:
        by_gen.setdefault(g, []).append(ms)
    lags.sort()
    print(
        json.dumps(
            {
                "units": args.units,
                "screens": args.screens,
                "positions_per_s": round(got / wall),
                "cpu_share": round(cpu / wall, 3),
                "cpu_us_per_position": round(cpu / got * 1e6, 1),
                "gc": {
                    str(g): {"n": len(v), "max_ms": round(max(v), 1), "sum_ms": round(sum(v), 1)}
                    for g, v in sorted(by_gen.items())
                },
                "gc_walked": [(g, w, round(ms, 1)) for g, _c, ms, w in passes.passes][:12] if args.walked else None,
                "loop_lag_ms": {"p99": round(lags[int(len(lags) * 0.99)], 1), "max": round(lags[-1], 1)},
                "young_objects_at_sample": young,
                "tracked_top": old.most_common(12),
                "frames_sent_per_screen": screens[0].sent_messages,
            }
        )
    )
    for t in tasks + writers:
        t.cancel()
    await tracker.close()
    for feed in feeds:
        await feed.close()


if __name__ == "__main__":
    asyncio.run(main())
