"""Load for the telemetry benchmark, run in its own process: N units at a fixed rate, M screens.

Units speak the real protocol (docs/protocols.md) on the real unit socket and wait for each ack, as
``field_device.client`` does; screens log in like a wall display and measure unit→screen latency with
the fix time the unit stamped (same machine, same clock). Prints one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.harness import percentile, tune_gc
from command_center.loop_lag import sample_forever


def now_ms() -> int:
    return int(time.time() * 1000)


class Figures:
    def __init__(self) -> None:
        self.sent = 0
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.errors = 0
        self.ack_ms: list[float] = []
        self.screen_ms: list[float] = []
        self.screen_positions = 0  # positions seen by the measuring screens
        self.screen_bytes = 0  # bytes read by the other screens
        self.last_sent: dict[str, int] = {}
        self.screen_last: list[dict[str, int]] = []
        self.screen_seen: list[dict[str, set[int]]] = []  # per measuring screen: unit → fix times shown (trails too)
        self.measuring = False


async def run_unit(http: aiohttp.ClientSession, url: str, unit_id: str, secret: str, rate: float, stop: float,
                   figures: Figures, rng: random.Random) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {secret}"}
    lat, lon = 45.757 + rng.uniform(-0.08, 0.08), 126.642 + rng.uniform(-0.12, 0.12)
    seq = 0
    async with http.ws_connect(f"{url}/api/telemetry/ws", headers=headers, heartbeat=None, compress=0) as ws:
        await asyncio.sleep(rng.uniform(0, 1 / rate))  # spread the units over the second
        next_at = time.monotonic()
        while time.monotonic() < stop:
            seq += 1
            lat += rng.uniform(-1e-4, 1e-4)
            lon += rng.uniform(-1e-4, 1e-4)
            sent_at = now_ms()
            message = {"seq": seq, "fix_time_ms": sent_at, "lat": lat, "lon": lon, "accuracy_m": 5.0,
                       "speed_mps": 1.4, "heading_deg": 90.0, "battery_pct": 77.0}  # fmt: skip
            await ws.send_str(orjson.dumps(message).decode())
            figures.sent += 1
            figures.last_sent[unit_id] = seq
            reply = await ws.receive()
            if reply.type != aiohttp.WSMsgType.TEXT:
                figures.errors += 1
                return
            ack = orjson.loads(reply.data)
            if ack.get("type") != "ack":
                figures.errors += 1
                continue
            figures.stored += len(ack["stored"])
            figures.duplicates += len(ack["duplicates"])
            figures.rejected += len(ack["rejected"])
            if figures.measuring:
                figures.ack_ms.append(now_ms() - sent_at)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def run_screen(http: aiohttp.ClientSession, url: str, token: str, stop: float, figures: Figures,
                     last: dict[str, int], measure: bool, seen: dict[str, set[int]],
                     subscribed: asyncio.Event) -> None:  # fmt: skip
    """A screen socket; measuring screens decode every frame, the others read and count bytes only (a real
    wall display decodes too, but on its own machine, not on the load generator's one core)."""
    async with http.ws_connect(f"{url}/api/screen/ws", headers={"Authorization": f"Bearer {token}"}, heartbeat=None,
                               compress=0, max_msg_size=64 * 1024 * 1024) as ws:  # fmt: skip
        await ws.send_str(json.dumps({"type": "subscribe", "topics": ["units"]}))
        while time.monotonic() < stop + 2:
            try:
                message = await ws.receive(timeout=max(0.1, stop + 2 - time.monotonic()))
            except TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            subscribed.set()
            if not measure:
                figures.screen_bytes += len(message.data)
                continue
            data = orjson.loads(message.data)
            if data["type"] not in ("frame", "snapshot"):
                continue
            arrived = now_ms()
            for view in data["units"]:
                position = view["position"]
                if position is None:
                    continue
                last[view["unit_id"]] = max(last.get(view["unit_id"], 0), position["seq"])
                seen.setdefault(view["unit_id"], set()).add(position["fix_time_ms"])
                if data["type"] == "frame" and figures.measuring:
                    figures.screen_ms.append(arrived - position["fix_time_ms"])
                    figures.screen_positions += 1
            for track in data.get("track", ()):
                seen.setdefault(track["unit_id"], set()).update(point[0] for point in track["points"])


async def main(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    figures = Figures()
    rng = random.Random(7)
    # its own loop's lag, as the server's: a load generator that stalls reports its stall as our latency
    probe = asyncio.create_task(sample_forever(Path(args.lag_file))) if args.lag_file else None
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        tokens = []
        for _ in range(args.screens):
            async with http.post(f"{args.url}/api/auth/login", json=plan["screen_login"]) as response:
                tokens.append((await response.json())["token"])
        start = time.monotonic()
        stop = start + args.ramp + args.warmup + args.duration
        figures.screen_last = [{} for _ in tokens]
        figures.screen_seen = [{} for _ in tokens]
        subscribed = [asyncio.Event() for _ in tokens]
        screens = [asyncio.create_task(run_screen(http, args.url, t, stop, figures, figures.screen_last[i],
                                                  i < args.measuring_screens, figures.screen_seen[i], subscribed[i]))
                   for i, t in enumerate(tokens)]  # fmt: skip
        # the screens see every position only if they are subscribed before the first is sent
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in subscribed)), 30)
        units = []
        secrets = list(plan["units"].items())[: args.units]
        for i, (unit_id, secret) in enumerate(secrets):
            units.append(asyncio.create_task(run_unit(http, args.url, unit_id, secret, args.rate, stop, figures, rng)))
            if i % 100 == 99:  # open connections in steps, as units come on shift, not all in one instant
                await asyncio.sleep(args.ramp * 100 / len(secrets))
        await asyncio.sleep(max(0.0, start + args.ramp + args.warmup - time.monotonic()))
        print(json.dumps({"event": "measuring"}), flush=True)
        figures.measuring = True
        sent_before = figures.sent
        measured_from = time.monotonic()
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        figures.measuring = False
        print(json.dumps({"event": "measured"}), flush=True)
        window = time.monotonic() - measured_from
        sent_in_window = figures.sent - sent_before
        results = await asyncio.gather(*units, return_exceptions=True)
        await asyncio.gather(*screens, return_exceptions=True)
    if probe is not None:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    unit_failures = [repr(r) for r in results if isinstance(r, BaseException)]
    behind = [
        sum(1 for unit_id, seq in figures.last_sent.items() if last.get(unit_id, 0) < seq)
        for last in figures.screen_last[: args.measuring_screens]
    ]
    return {
        "units": len(secrets),
        "screens": args.screens,
        "window_s": round(window, 2),
        "positions_per_s": round(sent_in_window / window, 1),
        "sent": figures.sent,
        "stored": figures.stored,
        "duplicates": figures.duplicates,
        "rejected": figures.rejected,
        "errors": figures.errors,
        "unit_failures": unit_failures[:5],
        "unit_failure_count": len(unit_failures),
        "ack_ms": {"p50": percentile(figures.ack_ms, 50), "p99": percentile(figures.ack_ms, 99)},
        "screen_ms": {
            "p50": percentile(figures.screen_ms, 50),
            "p99": percentile(figures.screen_ms, 99),
            "max": max(figures.screen_ms, default=float("nan")),
        },
        "measuring_screens": args.measuring_screens,
        "screen_positions_per_s": round(figures.screen_positions / window, 1),
        "other_screens_mib_per_s": round(figures.screen_bytes / window / 2**20, 2),
        "units_behind_on_screens": behind,
        # distinct positions each measuring screen showed over the whole run (it subscribed before any was sent)
        "screen_seen": [sum(len(t) for t in seen.values()) for seen in figures.screen_seen[: args.measuring_screens]],
        "last_sent": figures.last_sent,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--plan", required=True, help="JSON: unit secrets and the screen login")
    parser.add_argument("--units", type=int, required=True)
    parser.add_argument("--screens", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--measuring-screens", type=int, default=4)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--lag-file", default="", help="sample this process's event-loop lag into this file")
    arguments = parser.parse_args()
    with open(arguments.plan) as plan_file:
        plan = json.load(plan_file)
    tune_gc()
    result = asyncio.run(main(arguments, plan))
    print(json.dumps(result), flush=True)
    sys.exit(0)
