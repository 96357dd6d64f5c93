"""Load for the GB/T 28181 benchmark, run in its own process: GB devices reporting MobilePosition, and screens.

The screens log in and subscribe before the first device registers, so every position a device sends should
reach them; the devices (``simulators.gb28181``, Time with milliseconds) register in steps and report at a
fixed interval until SIGINT, then the screens read two more seconds. Printed on stdout, one JSON object a
line: ``{"event": "screens"}`` once the screens are subscribed (the caller's own devices may start then),
``{"event": "registered", ...}`` once every device has registered or given up, and the figures at the end:
positions sent per unit, distinct positions each screen saw per unit, and each screen position's arrival
(``time.monotonic``) and device→screen latency, so the caller cuts them to its own windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.harness import tune_gc
from command_center.loop_lag import sample_forever
from simulators.gb28181.device import SimulatedDevice

GRACE_S = 2.0  # the screens keep reading this long after the devices stop: the last positions arrive
LINGER_S = 8.0  # after the stop, a device sends its unanswered MESSAGEs again this long (RFC 3261 Timer E)


class Screen:
    """One screen socket on the ``units`` topic: latency of each position shown, and every position seen."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (arrival monotonic, device→screen ms)
        self.seen: dict[str, set[int]] = {}  # unit id → fix times (ms) of the positions shown, trails included
        self.subscribed = asyncio.Event()

    async def watch(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        async with http.ws_connect(f"{url}/api/screen/ws", headers={"Authorization": f"Bearer {token}"},
                                   heartbeat=None, compress=0, max_msg_size=64 * 1024 * 1024) as ws:  # fmt: skip
            await ws.send_str(json.dumps({"type": "subscribe", "topics": ["units"]}))
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = orjson.loads(message.data)
                if data["type"] == "snapshot":
                    self.subscribed.set()
                if data["type"] != "frame":
                    continue
                arrived_s, arrived_ms = time.monotonic(), time.time() * 1000
                for view in data["units"]:
                    position = view["position"]
                    if position is not None:
                        self.samples.append((arrived_s, arrived_ms - position["fix_time_ms"]))
                        self.seen.setdefault(view["unit_id"], set()).add(position["fix_time_ms"])
                for track in data.get("track", ()):
                    self.seen.setdefault(track["unit_id"], set()).update(point[0] for point in track["points"])


async def main(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    probe = asyncio.create_task(sample_forever(Path(args.lag_file))) if args.lag_file else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, _, port = args.sip.rpartition(":")
    devices = {unit_id: SimulatedDevice(device_id, password, (host, int(port)), domain=args.domain,
                                        platform_id=args.platform_id, seed=n + 1_000, position_seconds=args.interval,
                                        keepalive_seconds=30, precise_time=True,
                                        linger_seconds=LINGER_S)
               for n, (unit_id, device_id, password) in enumerate(plan["devices"])}  # fmt: skip
    screens = [Screen() for _ in range(args.screens)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        watching = []
        for screen in screens:
            async with http.post(f"{args.url}/api/auth/login", json=plan["screen_login"]) as response:
                token = (await response.json())["token"]
            watching.append(asyncio.create_task(screen.watch(http, args.url, token)))
        await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in screens)), 30)
        print(json.dumps({"event": "screens"}), flush=True)  # the caller's devices may start now
        running: list[asyncio.Task[None]] = []
        for i, device in enumerate(devices.values()):
            running.append(asyncio.create_task(device.run(stop)))
            if i % 50 == 49:  # devices come on shift in steps, not all in one instant
                await asyncio.sleep(50 / args.ramp)
        for _ in range(6_000):  # a device gives up after 11.5 s without an answer
            if all(d.registered or t.done() for d, t in zip(devices.values(), running, strict=True)):
                break
            await asyncio.sleep(0.1)
        failures = [repr(t.exception()) for t in running if t.done() and t.exception() is not None]
        print(json.dumps({"event": "registered", "registered": sum(d.registered for d in devices.values()),
                          "failed": len(failures), "failures": failures[:5]}), flush=True)  # fmt: skip
        await stop.wait()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.sleep(GRACE_S)
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
    if probe is not None:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    return {
        "sent": {unit_id: d.positions_sent for unit_id, d in devices.items()},
        "retransmissions": sum(d.retransmissions for d in devices.values()),
        "unanswered": sum(d.messages_unanswered for d in devices.values()),
        "seen": [{unit_id: len(times) for unit_id, times in s.seen.items()} for s in screens],
        "samples": [[round(at, 3), round(ms, 1)] for s in screens for at, ms in s.samples],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the command centre (screens)")
    parser.add_argument("--sip", required=True, help="its SIP address host:port (devices)")
    parser.add_argument("--plan", required=True, help="JSON: devices [unit id, device id, password], screen login")
    parser.add_argument("--screens", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a device's positions")
    parser.add_argument("--ramp", type=float, default=500.0, help="devices started per second")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--platform-id", required=True)
    parser.add_argument("--lag-file", default="", help="sample this process's event-loop lag into this file")
    arguments = parser.parse_args()
    with open(arguments.plan) as plan_file:
        loaded = json.load(plan_file)
    tune_gc()
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(main(arguments, loaded))) + b"\n")
    sys.stdout.flush()
