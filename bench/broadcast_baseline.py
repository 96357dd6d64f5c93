"""Baseline for the telemetry benchmark: a bare ``websockets.broadcast`` of frames shaped like ours.

``serve`` runs the broadcaster (pinned to the server's core by the caller): once M clients are connected it
broadcasts frames of K unit views at a fixed rate (paced), then as fast as it can (flat out). ``clients``
connects M screens and reports latency (paced) and delivered positions per second (flat out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import orjson
import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.harness import percentile, tune_gc


def view(i: int, stamp: int) -> dict[str, Any]:
    return {"unit_id": f"BENCH-{i:05d}", "name": f"单兵{i}", "kind": "body_camera", "court_id": "HLJ0102",
            "status": "available", "last_seen_ms": stamp,
            "position": {"seq": 1, "fix_time_ms": stamp, "lat": 45.75, "lon": 126.64, "accuracy_m": 5.0,
                         "speed_mps": 1.4, "heading_deg": 90.0, "altitude_m": None, "battery_pct": 77.0}}  # fmt: skip


async def run_server(port: int, screens: int, per_frame: int, fps: float, paced_s: float, flat_s: float) -> None:
    clients: set[ServerConnection] = set()
    ready = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        if len(clients) >= screens:
            ready.set()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        await ready.wait()
        for phase, seconds in (("paced", paced_s), ("flat", flat_s)):
            end = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < end:
                stamp = int(time.time() * 1000)
                frame = {"type": "frame", "phase": phase, "units": [view(i, stamp) for i in range(per_frame)]}
                broadcast(clients, orjson.dumps(frame).decode())
                if phase == "paced":
                    next_at += 1 / fps
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                else:
                    await asyncio.sleep(0)
        broadcast(clients, json.dumps({"type": "done"}))
        await asyncio.sleep(1)


async def run_clients(port: int, screens: int) -> dict[str, Any]:
    latencies: list[float] = []
    flat_positions = 0
    flat_times: list[float] = []

    async def screen() -> None:
        nonlocal flat_positions
        async with websockets.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None,
                                      max_queue=None) as ws:  # fmt: skip
            async for raw in ws:
                arrived = int(time.time() * 1000)
                data = orjson.loads(raw)
                if data["type"] == "done":
                    return
                if data["phase"] == "paced":
                    latencies.extend(arrived - v["position"]["fix_time_ms"] for v in data["units"])
                else:
                    flat_positions += len(data["units"])
                    flat_times.append(time.monotonic())

    for attempt in range(50):
        try:
            await asyncio.gather(*(screen() for _ in range(screens)))
            break
        except OSError:
            await asyncio.sleep(0.2 * (attempt + 1))
    flat_window = (max(flat_times) - min(flat_times)) if len(flat_times) > 1 else float("nan")
    return {
        "paced_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "flat_positions_per_s": round(flat_positions / flat_window, 1) if flat_window == flat_window else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "clients"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--screens", type=int, default=20)
    parser.add_argument("--per-frame", type=int, default=500)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--paced-seconds", type=float, default=8.0)
    parser.add_argument("--flat-seconds", type=float, default=4.0)
    args = parser.parse_args()
    tune_gc()
    if args.mode == "serve":
        asyncio.run(
            run_server(args.port, args.screens, args.per_frame, args.fps, args.paced_seconds, args.flat_seconds)
        )
    else:
        print(json.dumps(asyncio.run(run_clients(args.port, args.screens))), flush=True)
