"""Simulated field units on the real transports: ``python -m simulators.units``.

Each unit walks (body camera, handheld) or drives (vehicle) a street-grid route in its court's district
of the city (default 哈尔滨: 道里, 南岗, 道外, 松北), reports at a fixed rate through ``TelemetryClient``
(one socket per unit), now and then raises SOS, and now and then loses its link for a while and comes
back with a backlog. Device secrets come from ``--secrets`` (JSON: unit id -> secret); with
``--register``, missing units are registered through the API as an administrator and their secrets,
shown only once, are added to that file (readable by its owner only) for later runs.

Units report spread over each period rather than all at once, as real units do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import signal
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp

from field_device.client import TelemetryClient
from field_device.outbox import JournalledOutbox, Outbox, seq_floor
from persistence.models import UnitKind
from simulators.units.routes import HARBIN, HARBIN_COURT_AREAS, Area, City, RouteWalker

log = logging.getLogger("simulators.units.simulate")

DEFAULT_COURTS = ("HLJ0102", "HLJ0103", "HLJ0104", "HLJ0109")
KINDS = (UnitKind.BODY_CAMERA, UnitKind.BODY_CAMERA, UnitKind.HANDHELD, UnitKind.VEHICLE)
SAVE_EVERY = 50  # registrations between saves of the secrets file (and once at the end, whatever happens)


class PlannedUnit(NamedTuple):
    unit_id: str
    court_id: str
    kind: UnitKind


def unit_plan(count: int, courts: list[str], prefix: str = "S") -> list[PlannedUnit]:
    """``count`` units spread over the courts, ids like ``HLJ0102-S01``; one in four is a vehicle."""
    plan = []
    for i in range(count):
        court = courts[i % len(courts)]
        plan.append(PlannedUnit(f"{court}-{prefix}{i // len(courts) + 1:02d}", court, KINDS[i % len(KINDS)]))
    return plan


def area_for(court_id: str, index: int, city: City) -> Area:
    """A Harbin court's units work in its district; any other court gets the city's districts in turn."""
    name = HARBIN_COURT_AREAS.get(court_id) if city is HARBIN else None
    by_name = {area.name: area for area in city.areas}
    return by_name[name] if name in by_name else city.areas[index % len(city.areas)]


def load_secrets(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    secrets = json.loads(path.read_text())
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        raise SystemExit(f"{path}: expected a JSON object mapping unit ids to device secrets")
    return {str(k): v for k, v in secrets.items()}


def save_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Device secrets are credentials: the file is readable by its owner only (0600), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(secrets, handle, indent=1, sort_keys=True)
    os.chmod(temporary, 0o600)  # in case it existed with wider permissions
    os.replace(temporary, path)


async def register(url: str, admin: str, password: str, missing: list[PlannedUnit], secrets: dict[str, str],
                   secrets_path: Path, concurrency: int = 8) -> None:  # fmt: skip
    """Register ``missing`` units as the administrator, adding each secret to ``secrets`` and the file.

    The file is saved every ``SAVE_EVERY`` units and once more at the end even when a registration
    fails, so no secret shown by the server is lost with the process.
    """
    unknown: list[str] = []
    created = 0
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/auth/login", json={"username": admin, "password": password}) as response:
            if response.status != 200:
                raise SystemExit(f"cannot log in as {admin} to register units: {await response.text()}")
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        gate = asyncio.Semaphore(concurrency)

        async def one(unit: PlannedUnit) -> None:
            nonlocal created
            body = {"id": unit.unit_id, "name": f"模拟单兵 {unit.unit_id}", "kind": unit.kind.value,
                    "court_id": unit.court_id}  # fmt: skip
            async with gate, http.post(f"{url}/api/units", json=body, headers=headers) as response:
                if response.status == 409:
                    unknown.append(unit.unit_id)
                    return
                if response.status != 201:
                    raise SystemExit(f"registering {unit.unit_id} failed ({response.status}): {await response.text()}")
                secrets[unit.unit_id] = (await response.json())["secret"]
            created += 1
            if created % SAVE_EVERY == 0:
                save_secrets(secrets_path, secrets)

        try:
            async with asyncio.TaskGroup() as group:
                for unit in missing:
                    group.create_task(one(unit), name=f"register:{unit.unit_id}")
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        finally:
            if created:
                save_secrets(secrets_path, secrets)
    if unknown:
        raise SystemExit(
            f"{len(unknown)} units exist but their secrets are not in {secrets_path} (e.g. {unknown[0]}): "
            "point --secrets at the file of the run that created them, or use another --prefix"
        )


class SimulatedUnit:
    """One unit: its route, its battery and its radio (the client)."""

    def __init__(self, unit: PlannedUnit, client: TelemetryClient, walker: RouteWalker, seed: int) -> None:
        self.unit = unit
        self.client = client
        self.walker = walker
        self.rng = random.Random(seed * 7919 + 1)
        self.sos_raised = 0

    def tick(self, dt: float, now_ms: int, *, sos_probability: float, drop_probability: float,
             drop_seconds: float) -> None:  # fmt: skip
        sos = self.rng.random() < sos_probability
        self.sos_raised += sos
        self.client.record(self.walker.step(dt).telemetry(now_ms, sos=sos))
        if drop_probability and not self.client.offline and self.rng.random() < drop_probability:
            self.client.drop_link(self.rng.uniform(0.5, 1.5) * drop_seconds)


def build_units(args: argparse.Namespace, plan: list[PlannedUnit], secrets: dict[str, str],
                session: aiohttp.ClientSession) -> list[SimulatedUnit]:  # fmt: skip
    city = HARBIN if (args.lat, args.lon) == HARBIN.centre else City.around((args.lat, args.lon))
    first_seq = seq_floor(int(time.time() * 1000))
    units = []
    for index, planned in enumerate(plan):
        seed = args.seed * 100_003 + index
        outbox: Outbox
        if args.outbox_dir:
            path = Path(args.outbox_dir) / f"{planned.unit_id}.jsonl"
            outbox = JournalledOutbox(path, args.outbox_capacity, first_seq=first_seq)
        else:
            outbox = Outbox(args.outbox_capacity, first_seq=first_seq)
        client = TelemetryClient(args.url, secrets[planned.unit_id], outbox=outbox, session=session, seed=seed,
                                 label=planned.unit_id)  # fmt: skip
        walker = RouteWalker(planned.kind, seed, city=city, area=area_for(planned.court_id, index, city))
        units.append(SimulatedUnit(planned, client, walker, seed))
    return units


async def simulate(args: argparse.Namespace, units: list[SimulatedUnit], stop: asyncio.Event) -> None:
    """Tick every unit once a period, in slices spread over the period, until ``stop`` or the duration."""
    period = 1 / args.rate
    slices = max(1, min(len(units), int(period / 0.02)))  # a slice at most every 20 ms
    started = time.monotonic()
    next_report = started + args.report_every
    due = started
    while not stop.is_set() and not (args.duration and time.monotonic() - started >= args.duration):
        for index in range(slices):
            now_ms = int(time.time() * 1000)
            for unit in units[index::slices]:
                unit.tick(period, now_ms, sos_probability=args.sos_probability,
                          drop_probability=args.drop_probability, drop_seconds=args.drop_seconds)  # fmt: skip
            due += period / slices
            if time.monotonic() - due > period:  # this machine cannot keep the pace: skip, do not burst
                log.warning("simulator %.1f s behind its schedule; skipping ahead", time.monotonic() - due)
                due = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
        if time.monotonic() >= next_report:
            print(status_line(units, time.monotonic() - started), flush=True)
            next_report += args.report_every


async def drain(units: list[SimulatedUnit], seconds: float) -> None:
    """Give the backlogs (and units still in an outage) a chance to arrive before closing."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            for unit in units:
                await unit.client.drained()


async def run(args: argparse.Namespace, *, stop: asyncio.Event | None = None) -> list[SimulatedUnit]:
    """Register (if asked), start every unit, simulate, drain, close; returns the units for their counters."""
    stop = stop or asyncio.Event()
    plan = unit_plan(args.units, args.courts.split(","), args.prefix)
    secrets_path = Path(args.secrets)
    secrets = load_secrets(secrets_path)
    missing = [p for p in plan if p.unit_id not in secrets]
    if missing and args.register:
        await register(args.url, args.admin_user, admin_password(args), missing, secrets, secrets_path)
    elif missing:
        raise SystemExit(f"no device secret for {missing[0].unit_id} (and {len(missing) - 1} more) in "
                         f"{secrets_path}: use --register")  # fmt: skip
    raise_file_limit(len(plan) + 256)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        units = build_units(args, plan, secrets, session)
        try:
            for start, unit in enumerate(units):
                await unit.client.start()
                if start % 100 == 99:
                    await asyncio.sleep(0.02)  # 5,000 units connect over a second, not in one burst
            where = ", ".join(sorted({u.walker.area.name for u in units}))
            print(f"simulating {len(units)} units ({where}) at {args.rate:g} Hz against {args.url}", flush=True)
            await simulate(args, units, stop)
            if not stop.is_set():  # the duration ended (on a signal, leave at once)
                await drain(units, args.drain_seconds)
        finally:
            print(status_line(units, None), flush=True)
            for unit in units:
                await unit.client.close()
                if isinstance(unit.client.outbox, JournalledOutbox):
                    unit.client.outbox.close()
            waiting = sum(len(u.client.outbox) for u in units)
            if waiting and not args.outbox_dir:
                print(f"{waiting} positions not acknowledged are discarded on exit (--outbox-dir keeps them)")
    return units


def status_line(units: list[SimulatedUnit], elapsed: float | None) -> str:
    clients = [u.client for u in units]
    total: dict[str, int] = {}
    for client in clients:
        for key, value in client.counters().items():
            total[key] = total.get(key, 0) + value
    online = sum(c.connected for c in clients)
    when = "final" if elapsed is None else f"t={elapsed:.0f}s"
    shown = ("recorded", "sent", "acked", "duplicates", "backlog", "refused", "rejected", "reconnects", "drops")
    sos = sum(u.sos_raised for u in units)
    return " ".join([when, f"online={online}/{len(clients)}", *(f"{k}={total.get(k, 0)}" for k in shown), f"sos={sos}"])


def admin_password(args: argparse.Namespace) -> str:
    if args.admin_password:
        return str(args.admin_password)
    path = Path(args.admin_password_file)
    if not path.is_file():
        raise SystemExit(f"--register needs the administrator's password: --admin-password, or {path}")
    return path.read_text().strip()


def raise_file_limit(wanted: int) -> None:
    """One socket per unit: 5,000 units need more descriptors than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parser() -> argparse.ArgumentParser:
    data_dir = Path(os.environ.get("CC_DATA_DIR", "var"))
    p = argparse.ArgumentParser(prog="python -m simulators.units", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the command centre")
    p.add_argument("--units", type=int, default=20)
    p.add_argument("--rate", type=float, default=1.0, help="positions per second per unit")
    p.add_argument("--seed", type=int, default=1, help="same seed, same routes")
    p.add_argument("--courts", default=",".join(DEFAULT_COURTS), help="court ids the units belong to")
    p.add_argument("--prefix", default="S", help="unit ids are <court>-<prefix><n>")
    p.add_argument("--lat", type=float, default=HARBIN.centre[0], help="city centre (default 哈尔滨)")
    p.add_argument("--lon", type=float, default=HARBIN.centre[1])
    p.add_argument("--sos-probability", type=float, default=0.0002, help="per unit per position")
    p.add_argument("--drop-probability", type=float, default=0.001, help="per unit per position: the link drops")
    p.add_argument("--drop-seconds", type=float, default=30.0, help="typical outage (0.5-1.5 times this)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs until interrupted")
    p.add_argument("--drain-seconds", type=float, default=10.0, help="at the end, wait this long for backlogs")
    p.add_argument("--report-every", type=float, default=5.0, help="seconds between status lines")
    p.add_argument("--outbox-capacity", type=int, default=100_000, help="positions kept per unit while offline")
    p.add_argument("--outbox-dir", default="", help="keep each unit's outbox in DIR/<unit>.jsonl across runs")
    p.add_argument("--secrets", default=str(data_dir / "simulated-units.json"), help="unit id -> device secret")
    p.add_argument("--register", action="store_true", help="register missing units as the administrator")
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-password", default="", help="default: read from --admin-password-file")
    p.add_argument("--admin-password-file", default=str(data_dir / "first-admin-password"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.units < 1 or args.rate <= 0:
        raise SystemExit("--units must be at least 1 and --rate positive")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> None:
    """Run until the duration ends or SIGINT/SIGTERM, then drain and close cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(args, stop=stop)


if __name__ == "__main__":
    main()
