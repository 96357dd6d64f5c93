"""Simulated movement (pure, property-tested) and the simulator run as a real process against the app."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ids import UnitId
from field_units.telemetry import Rejection, parse_position
from persistence.models import UnitKind
from simulators.units.routes import (
    BLOCK_M,
    HARBIN,
    Area,
    City,
    RouteWalker,
    distance_m,
    grid_path,
    heading_deg,
    speed_range,
    to_latlon,
    to_metres,
)
from simulators.units.simulate import area_for, load_secrets, save_secrets, unit_plan
from tests.conftest import World

ROOT = Path(__file__).resolve().parent.parent
KIND = st.sampled_from(list(UnitKind))
AREA = st.sampled_from(HARBIN.areas)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), kind=KIND, area=AREA, steps=st.integers(1, 1_500), dt=st.sampled_from([0.5, 1.0]))
def test_walks_and_drives_plausibly(seed: int, kind: UnitKind, area: Area, steps: int, dt: float) -> None:
    walker = RouteWalker(kind, seed, area=area)
    low, high = speed_range(kind)
    previous, battery = walker.position, walker.battery_pct
    for _ in range(steps):
        fix = walker.step(dt)
        assert fix.speed_mps == 0 or low <= fix.speed_mps <= high
        assert (fix.heading_deg is None) == (fix.speed_mps == 0)
        assert fix.heading_deg is None or 0 <= fix.heading_deg < 360
        assert 3 <= fix.accuracy_m <= 25 and 0 <= fix.battery_pct <= 100
        assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180 and math.isfinite(fix.lat + fix.lon)
        assert distance_m(previous, walker.position) <= high * dt + 1e-6  # no teleporting
        assert distance_m((fix.lat, fix.lon), walker.position) < 8 * fix.accuracy_m + 50  # noise: metres, not km
        assert fix.battery_pct <= battery or fix.battery_pct == 100  # drains, or a fresh battery on site
        previous, battery = walker.position, fix.battery_pct
    assert distance_m(walker.area.centre, walker.position) <= walker.area.radius_m * math.sqrt(2)


def test_units_move_along_streets_and_report_their_heading() -> None:
    """Between fixes a moving unit goes north-south or east-west, and says so in its heading."""
    walker = RouteWalker(UnitKind.VEHICLE, 7)
    straight = 0
    for _ in range(3_000):
        before = to_metres(HARBIN.centre, walker.position)
        fix = walker.step(1.0)
        after = to_metres(HARBIN.centre, walker.position)
        if fix.heading_deg is not None and math.hypot(after[0] - before[0], after[1] - before[1]) > 1:
            moved = heading_deg(before, after)
            if min(abs(moved - h) % 360 for h in (0, 90, 180, 270)) < 0.01:  # not turning a corner this second
                straight += 1
                assert abs((fix.heading_deg - moved + 180) % 360 - 180) < 0.01
    assert straight > 300


def test_units_stop_on_site_for_minutes_and_batteries_drain_slowly() -> None:
    walker = RouteWalker(UnitKind.BODY_CAMERA, 11)
    start = walker.battery_pct
    fixes = [walker.step(1.0) for _ in range(4 * 3600)]
    still = [f.speed_mps == 0 for f in fixes]
    longest, run = 0, 0
    for s in still:
        run = run + 1 if s else 0
        longest = max(longest, run)
    assert 60 <= longest <= 600 + 60 and 0.2 < sum(still) / len(still) < 0.8
    moving = [f.speed_mps for f in fixes if f.speed_mps]
    assert 1.0 <= sum(moving) / len(moving) <= 1.8
    drained = start - fixes[-1].battery_pct
    assert 0 < drained < 60 or fixes[-1].battery_pct > 85  # 4 h of an 8-12 h battery (or a swap)


def test_harbin_units_keep_to_their_bank_of_the_songhua() -> None:
    """松北 lies north of the river, the other three districts south of it (about 45.78-45.79 N here)."""
    for area in HARBIN.areas:
        for seed in range(4):
            walker = RouteWalker(UnitKind.VEHICLE, seed, area=area)
            lats = [walker.step(1.0).lat for _ in range(2_000)]
            if area.name == "松北":
                assert min(lats) > 45.79
            else:
                assert max(lats) < 45.785


def test_routes_are_deterministic_for_a_seed() -> None:
    a, b, c = (RouteWalker(UnitKind.VEHICLE, seed) for seed in (5, 5, 6))
    track_a, track_b, track_c = ([w.step(1.0) for _ in range(300)] for w in (a, b, c))
    assert track_a == track_b != track_c


@given(
    start=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
    goal=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
    seed=st.integers(0, 1_000),
)
def test_grid_paths_follow_streets_and_stay_between_their_ends(
    start: tuple[int, int], goal: tuple[int, int], seed: int
) -> None:
    a = (start[0] * BLOCK_M, start[1] * BLOCK_M)
    b = (goal[0] * BLOCK_M, goal[1] * BLOCK_M)
    path = grid_path(a, b, random.Random(seed))
    assert (path[-1] if path else a) == b and len(path) <= 3
    for here, there in zip([a, *path], path, strict=False):
        assert here != there and (here[0] == there[0] or here[1] == there[1])  # one street at a time
        assert min(a[0], b[0]) <= there[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= there[1] <= max(a[1], b[1])
        assert there[0] % BLOCK_M == 0 and there[1] % BLOCK_M == 0  # junctions


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), kind=KIND, sos=st.booleans())
def test_every_fix_is_a_position_the_server_accepts(seed: int, kind: UnitKind, sos: bool) -> None:
    walker = RouteWalker(kind, seed)
    for n in range(200):
        message = {**walker.step(1.0).telemetry(1_763_800_000_000 + n, sos=sos), "seq": n}
        parsed = parse_position(message, unit_id=UnitId("U"), index=0, now_ms=1_763_800_000_000 + n)
        assert not isinstance(parsed, Rejection), parsed.message


def test_another_city_gets_four_districts_round_its_centre() -> None:
    city = City.around((39.9042, 116.4074), "北京")
    assert len(city.areas) == 4
    for area in city.areas:
        assert 2_000 < distance_m(city.centre, area.centre) < 4_000
        walker = RouteWalker(UnitKind.HANDHELD, 1, city=city, area=area)
        for _ in range(600):
            walker.step(1.0)
        assert distance_m(area.centre, walker.position) <= area.radius_m * math.sqrt(2)
    assert to_latlon(city.centre, to_metres(city.centre, (39.91, 116.41))) == pytest.approx((39.91, 116.41), abs=1e-9)


def test_units_are_planned_per_court_district() -> None:
    plan = unit_plan(6, ["HLJ0102", "HLJ0109"])
    assert [p.unit_id for p in plan] == ["HLJ0102-S01", "HLJ0109-S01", "HLJ0102-S02", "HLJ0109-S02",
                                         "HLJ0102-S03", "HLJ0109-S03"]  # fmt: skip
    assert {p.kind for p in plan} == {UnitKind.BODY_CAMERA, UnitKind.HANDHELD, UnitKind.VEHICLE}
    assert area_for("HLJ0102", 0, HARBIN).name == "道里" and area_for("HLJ0109", 1, HARBIN).name == "松北"
    assert area_for("HLJ1102", 5, HARBIN) is HARBIN.areas[1]


def test_secrets_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "var" / "units.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    save_secrets(path, {"HLJ0102-S01": "cc_d_x"})
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_secrets(path) == {"HLJ0102-S01": "cc_d_x"} and load_secrets(tmp_path / "none.json") == {}


# The simulator as a process, against the running app ---------------------------------------------------


async def simulate(world: World, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    password_file = tmp_path / "first-admin-password"
    password_file.write_text(world.passwords["admin"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.units", "--url", str(world.client.make_url("")).rstrip("/"),
        "--secrets", str(tmp_path / "simulated-units.json"), "--admin-password-file", str(password_file),
        "--report-every", "1", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def final_counters(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("final "))
    return {k: int(v.split("/")[0]) for k, v in (part.split("=") for part in line.split()[1:])}


async def test_the_simulator_registers_units_reports_through_outages_and_reuses_secrets(
    world: World, tmp_path: Path
) -> None:
    args = ("--units", "4", "--rate", "4", "--duration", "4", "--drop-probability", "0.05",
            "--drop-seconds", "0.5", "--sos-probability", "0.02", "--drain-seconds", "15")  # fmt: skip
    code, out, err = await simulate(world, tmp_path, "--register", *args)
    assert code == 0, err
    secrets = json.loads((tmp_path / "simulated-units.json").read_text())
    assert sorted(secrets) == ["HLJ0102-S01", "HLJ0103-S01", "HLJ0104-S01", "HLJ0109-S01"]
    assert oct((tmp_path / "simulated-units.json").stat().st_mode & 0o777) == "0o600"
    first = final_counters(out)
    assert first["recorded"] >= 4 * 4 * 3 and first["backlog"] == 0 and first["refused"] == first["rejected"] == 0
    assert first["drops"] >= 1 and first["reconnects"] >= 1  # outages happened, and healed (backlog 0)
    stored = {u: await world.store.count_positions(UnitId(u)) for u in secrets}
    assert sum(stored.values()) == first["recorded"] and all(stored.values())  # every position, once

    # A second run finds the secrets in the file (no --register needed) and numbers above the first run.
    code, out, err = await simulate(world, tmp_path, *args)
    assert code == 0, err
    second = final_counters(out)
    assert second["backlog"] == 0
    total = sum([await world.store.count_positions(UnitId(u)) for u in secrets])
    assert total == first["recorded"] + second["recorded"]


async def test_the_simulator_without_secrets_says_how_to_get_them(world: World, tmp_path: Path) -> None:
    code, _, err = await simulate(world, tmp_path, "--units", "2", "--duration", "1")
    assert code != 0 and "--register" in err
