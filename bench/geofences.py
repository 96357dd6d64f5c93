"""Geofence benchmark: 10,000 fences and 5,000 units at 1 Hz on one core; cost per position.

    python -m bench.geofences [--fences 10000] [--units 5000] [--seconds 5]

Each simulated second every unit reports one position; the index answers which fences contain it
(one vectorised STRtree query per tick, exact tests on the candidates) and the debouncer turns that into
enter/exit events. Baseline in the same run: testing every fence for every position (no index), on a
sample, and the per-point index query. Prints µs per position and the share of one core at 1 Hz.
"""

from __future__ import annotations

import argparse
import random
import time

from shapely.geometry import Polygon

from maps.geofences import Debouncer, FenceKind, Geofence, GeofenceIndex

HEILONGJIANG = (44.0, 49.0, 124.0, 131.0)  # lat range, lon range


def fences(count: int, rng: random.Random) -> list[Geofence]:
    out = []
    for i in range(count):
        lat, lon = rng.uniform(*HEILONGJIANG[:2]), rng.uniform(*HEILONGJIANG[2:])
        if i % 2:
            out.append(Geofence(f"c{i}", "", FenceKind.TARGET, centre=(lat, lon), radius_m=rng.uniform(50, 2000)))
        else:
            h = rng.uniform(0.002, 0.05)
            ring = [(lon - h, lat - h), (lon + h, lat - h * 0.7), (lon + h * 0.8, lat + h), (lon - h, lat + h * 0.9)]
            out.append(Geofence(f"p{i}", "", FenceKind.JURISDICTION, polygon=Polygon(ring)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fences", type=int, default=10_000)
    parser.add_argument("--units", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(11)
    all_fences = fences(args.fences, rng)
    started = time.perf_counter()
    index = GeofenceIndex(all_fences)
    build_s = time.perf_counter() - started
    # units cluster in cities (where fences are dense too): half around Harbin, the rest anywhere
    units = [
        (45.75 + rng.gauss(0, 0.1), 126.64 + rng.gauss(0, 0.1)) if i % 2 else
        (rng.uniform(*HEILONGJIANG[:2]), rng.uniform(*HEILONGJIANG[2:]))
        for i in range(args.units)
    ]  # fmt: skip
    debounce = Debouncer()
    events = 0
    started = time.perf_counter()
    for second in range(args.seconds):
        lats = [lat + rng.gauss(0, 0.0002) for lat, _ in units]
        lons = [lon + rng.gauss(0, 0.0002) for _, lon in units]
        inside = index.containing_many(lats, lons)
        for u, fences_in in enumerate(inside):
            events += len(debounce.update(f"U{u}", second * 1000, fences_in))
    bulk_us = (time.perf_counter() - started) / (args.seconds * args.units) * 1e6

    sample = units[:500]
    started = time.perf_counter()
    for lat, lon in sample:
        index.containing(lat, lon)
    single_us = (time.perf_counter() - started) / len(sample) * 1e6
    started = time.perf_counter()
    for lat, lon in sample[:50]:
        {f.id for f in all_fences if f.contains(lat, lon)}
    brute_us = (time.perf_counter() - started) / 50 * 1e6

    print(f"{args.fences} fences (index built in {build_s * 1000:.0f} ms), {args.units} units at 1 Hz, "
          f"{args.seconds} s simulated, {events} enter/exit events")  # fmt: skip
    print(f"index, one query per tick + debounce   {bulk_us:8.1f} µs per position   "
          f"({bulk_us * args.units / 1e6 * 100:.1f}% of one core at 1 Hz)")  # fmt: skip
    print(f"index, one query per position          {single_us:8.1f} µs per position")
    print(f"baseline: every fence tested (no index) {brute_us:8.1f} µs per position   "
          f"(index is {brute_us / bulk_us:.0f}x faster)")  # fmt: skip


if __name__ == "__main__":
    main()
