"""Simulated field units on the real transports: ``python -m field_units.simulate``.

Each unit walks or drives a street-grid route around a city (default Harbin), reports at a fixed rate
through ``TelemetryClient``, now and then raises SOS, and now and then loses its link for a while and
comes back with a backlog. Units are registered through the API on first use (``--register``, as the
first administrator) and their device secrets kept, readable by the owner only, for later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from field_units.client import TelemetryClient
from field_units.routes import HARBIN, RouteWalker
from persistence.models import UnitKind

log = logging.getLogger("field_units.simulate")

DEFAULT_COURTS = ("HLJ0102", "HLJ0103", "HLJ0104", "HLJ0109")
KINDS = (UnitKind.BODY_CAMERA, UnitKind.BODY_CAMERA, UnitKind.HANDHELD, UnitKind.VEHICLE)


def unit_plan(count: int, courts: list[str]) -> list[tuple[str, str, UnitKind]]:
    """(unit id, court, kind) for ``count`` simulated units spread over the courts."""
    return [(f"{courts[i % len(courts)]}-S{i // len(courts) + 1:02d}", courts[i % len(courts)], KINDS[i % len(KINDS)])
            for i in range(count)]  # fmt: skip


def load_secrets(path: Path) -> dict[str, str]:
    secrets: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    return secrets


def save_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Device secrets are credentials: the file is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(secrets, handle, indent=1)


async def register(url: str, admin: str, password: str, plan: list[tuple[str, str, UnitKind]],
                   known: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """Secrets for every planned unit: the known ones, and new units registered through the API."""
    secrets = dict(known)
    missing = [p for p in plan if p[0] not in secrets]
    if not missing:
        return secrets
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/auth/login", json={"username": admin, "password": password}) as response:
            if response.status != 200:
                raise SystemExit(f"cannot log in as {admin} to register units: {await response.text()}")
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        for unit_id, court, kind in missing:
            body = {"id": unit_id, "name": f"模拟单兵 {unit_id}", "kind": kind.value, "court_id": court}
            async with http.post(f"{url}/api/units", json=body, headers=headers) as response:
                if response.status == 409:
                    raise SystemExit(f"unit {unit_id} exists but its secret is not known here; "
                                     "revoke it or choose other units")  # fmt: skip
                if response.status != 201:
                    raise SystemExit(f"registering {unit_id} failed: {await response.text()}")
                secrets[unit_id] = (await response.json())["secret"]
    return secrets


class SimulatedUnit:
    def __init__(self, client: TelemetryClient, kind: UnitKind, seed: int, centre: tuple[float, float]) -> None:
        self.client = client
        self.walker = RouteWalker(kind, seed, centre=centre)
        self.rng = random.Random(seed * 7919)
        self.battery = self.rng.uniform(60, 100)

    def tick(self, dt: float, *, sos_probability: float, drop_probability: float, drop_seconds: float) -> None:
        fix = self.walker.step(dt)
        self.battery = max(1.0, self.battery - dt * self.rng.uniform(0.002, 0.01))
        sos = self.rng.random() < sos_probability
        self.client.record({
            "fix_time_ms": int(time.time() * 1000), "lat": round(fix.lat, 7), "lon": round(fix.lon, 7),
            "accuracy_m": fix.accuracy_m, "speed_mps": round(fix.speed_mps, 2),
            "heading_deg": round(fix.heading_deg, 1), "altitude_m": 150.0, "battery_pct": round(self.battery, 1),
            "sos": sos,
        })  # fmt: skip
        if not self.client.offline and self.rng.random() < drop_probability:
            self.client.drop_link(self.rng.uniform(0.5, 1.5) * drop_seconds)


async def run(args: argparse.Namespace, known: dict[str, str], password: str) -> None:
    courts = args.courts.split(",")
    plan = unit_plan(args.units, courts)
    secrets = known
    if args.register:
        secrets = await register(args.url, args.admin_user, password, plan, known)
        if secrets != known:
            save_secrets(Path(args.secrets), secrets)
    missing = [unit_id for unit_id, _, _ in plan if unit_id not in secrets]
    if missing:
        raise SystemExit(f"no device secret for {missing[0]} (and {len(missing) - 1} more): use --register")
    centre = (args.lat, args.lon)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    units = []
    for index, (unit_id, _court, kind) in enumerate(plan):
        client = TelemetryClient(args.url, secrets[unit_id], session=session, seed=args.seed + index, label=unit_id)
        units.append(SimulatedUnit(client, kind, args.seed + index, centre))
    for unit in units:
        await unit.client.start()
    print(f"simulating {len(units)} units around {centre} at {args.rate} Hz against {args.url}", flush=True)
    started = time.monotonic()
    next_report = started + args.report_every
    period = 1 / args.rate
    try:
        while not args.duration or time.monotonic() - started < args.duration:
            tick = time.monotonic()
            for unit in units:
                unit.tick(period, sos_probability=args.sos_probability, drop_probability=args.drop_probability,
                          drop_seconds=args.drop_seconds)  # fmt: skip
            if time.monotonic() >= next_report:
                print(status_line(units), flush=True)
                next_report += args.report_every
            await asyncio.sleep(max(0.0, period - (time.monotonic() - tick)))
        async with asyncio.timeout(args.drain_seconds):  # give the backlogs a chance to arrive
            await asyncio.gather(*(u.client.drained() for u in units if not u.client.offline))
    except TimeoutError:
        pass
    finally:
        print(status_line(units), flush=True)
        for unit in units:
            await unit.client.close()
        await session.close()


def status_line(units: list[SimulatedUnit]) -> str:
    clients = [u.client for u in units]
    total: dict[str, Any] = {
        "online": sum(c.connected and not c.offline for c in clients),
        "sent": sum(c.sent for c in clients),
        "acked": sum(c.outbox.acked for c in clients),
        "backlog": sum(len(c.outbox) for c in clients),
        "refused": sum(c.outbox.refused for c in clients),
        "rejected": sum(c.rejected for c in clients),
        "reconnects": sum(c.reconnects for c in clients),
    }
    return " ".join(f"{k}={v}" for k, v in total.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m field_units.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1.0, help="positions per second per unit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--courts", default=",".join(DEFAULT_COURTS), help="court ids the units belong to")
    parser.add_argument("--lat", type=float, default=HARBIN[0])
    parser.add_argument("--lon", type=float, default=HARBIN[1])
    parser.add_argument("--sos-probability", type=float, default=0.0002, help="per unit per tick")
    parser.add_argument("--drop-probability", type=float, default=0.001, help="per unit per tick")
    parser.add_argument("--drop-seconds", type=float, default=30.0, help="typical outage length")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs until interrupted")
    parser.add_argument("--drain-seconds", type=float, default=10.0)
    parser.add_argument("--report-every", type=float, default=10.0)
    parser.add_argument("--secrets", default="var/simulated-units.json", help="unit id -> device secret (JSON)")
    parser.add_argument("--register", action="store_true", help="register missing units as the administrator")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--admin-password", default="")
    parser.add_argument("--admin-password-file", default="var/first-admin-password")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    known = load_secrets(Path(args.secrets))
    password = args.admin_password
    if args.register and not password:
        password = Path(args.admin_password_file).read_text().strip()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args, known, password))


if __name__ == "__main__":
    main()
