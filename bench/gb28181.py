"""GB/T 28181 benchmark: N devices registered over SIP reporting MobilePosition at 1 Hz, M of them streaming
H.264 640×480 at 25 fps as PS over RTP, each watched by one WHEP viewer; one server process.

    python -m bench.gb28181 --devices 2000 --streams 20 --seconds 20

The command centre runs as a real process pinned to core 0 (SQLite, in-process bus, every session recorded);
the devices (``simulators.gb28181``) and viewers (aiortc, receivers tapped so they do not decode) run here on
core 1. The server forwards the device's access units untouched, so a frame is recognised at the viewer by
its longest NAL unit: added forwarding latency is the viewer's receive time minus the device's send time of
that picture (same clock), covering RTP reassembly, PS demultiplexing, the hub and WebRTC. Printed: server CPU
(whole and per stream), latency p50/p99, frames lost, positions sent; then, in the same run, the WHIP
passthrough of ``bench.media`` at M streams (VP8 640×480 at 30 fps) for its CPU per stream beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from math import nan
from pathlib import Path
from typing import Any

import aiohttp

from bench.gb28181_load import LINGER_S
from bench.harness import (
    ROOT,
    Server,
    cpu_share,
    free_port,
    lag_line,
    loop_lag,
    loop_lag_env,
    percentile,
    sample,
    wait_share,
)
from bench.media import connected, encode_clip, negotiate, new_pc, passthrough_level
from bench.telemetry import pinned, prepare, run_level
from command_center.loop_lag import sample_forever
from config.settings import StoreSettings
from core.ids import UnitId
from gb28181 import digest
from media import passthrough
from media.frames import nal_units
from media.ice import restrict_host_addresses
from persistence.factory import build_store
from persistence.gb_port import GbDevice
from simulators.gb28181.clip import h264_clip
from simulators.gb28181.device import SimulatedDevice, device_ids
from simulators.units.simulate import raise_file_limit

DOMAIN, PLATFORM = "3402000000", "34020000002000000001"
WARMUP_S = 4.0


def picture_key(data: bytes) -> bytes:
    """A picture's identity whatever start codes carry it: its longest NAL unit's hash."""
    return hashlib.blake2b(max(nal_units(data), key=len, default=data), digest_size=8).digest()


async def enrol_devices(url: str, units: list[str]) -> dict[str, tuple[str, str]]:
    """Make each unit a GB device; unit id → (device id, SIP password)."""
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        devices = {}
        for unit_id, device_id in zip(units, device_ids(DOMAIN, len(units)), strict=True):
            password = f"bench-{device_id[-7:]}"
            await store.add_gb_device(GbDevice(UnitId(unit_id), device_id, digest.ha1(device_id, DOMAIN, password)))
            devices[unit_id] = (device_id, password)
        return devices
    finally:
        await store.close()


async def positions_stored(url: str) -> dict[str, int]:
    """Positions in the store per unit (read after the server stopped: its writer has flushed)."""
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        return {u.id: await store.count_positions(u.id) for u in await store.list_units()}
    finally:
        await store.close()


async def expect(load: asyncio.subprocess.Process, event: str, within: float) -> dict[str, Any]:
    """The load process's next line announcing ``event`` (its JSON)."""
    assert load.stdout is not None
    async with asyncio.timeout(within):
        while line := await load.stdout.readline():
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message
    raise RuntimeError(f"the load process ended before {event!r} (exit {await load.wait()})")


def latency(samples: list[list[float]], window: tuple[float, float]) -> dict[str, float]:
    values = [ms for at, ms in samples if window[0] <= at <= window[1]]
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values, default=nan),
            "count": len(values)}  # fmt: skip


async def gb_level(devices: int, streams: int, seconds: float, screens: int, work: Path) -> dict[str, Any]:
    """Window A: the devices' positions alone; window B: the same with ``streams`` PS streams watched."""
    folder = work / "gb28181"
    folder.mkdir()
    url = f"sqlite:///{folder / 'bench.db'}"
    plan = await prepare(url, devices)
    enrolled = await enrol_devices(url, list(plan["units"]))
    sip_port, port = free_port(), free_port()
    env = {"CC_STORE__URL": url, "CC_DATA_DIR": str(folder), "CC_CONFIG": "",
           "CC_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
           "CC_MEDIA__MAX_SESSIONS": str(4 * streams + 8),
           # one operator watches every stream: lift the per-user and per-court caps meant for real users
           "CC_MEDIA__MAX_SESSIONS_PER_USER": str(4 * streams + 8),
           "CC_MEDIA__MAX_SESSIONS_PER_COURT": str(4 * streams + 8),
           "CC_MEDIA__SEGMENT_SECONDS": "10",
           "CC_GB28181__ENABLED": "true", "CC_GB28181__SIP_HOST": "127.0.0.1", "CC_GB28181__SIP_PORT": str(sip_port),
           "CC_GB28181__RTP_PORT_RANGE": "37000-37999", "CC_GB28181__MAX_EXPIRES_SECONDS": "3600",
           "CC_GB28181__FAILED_REGISTERS_PER_MINUTE": "100000", **loop_lag_env(folder / "loop-lag.jsonl")}  # fmt: skip
    server = Server(env, port=port, core=0)
    server.start(folder / "server.log")
    clip = h264_clip(100, width=640, height=480, fps=25, gop=25, profile="main")
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []
    counts = {"received": 0, "sent": 0}
    measuring = [False]

    def on_sent(data: bytes) -> None:
        sent_at[picture_key(data)] = time.time()
        if measuring[0]:
            counts["sent"] += 1

    stop = asyncio.Event()
    units = list(enrolled.items())
    # The streaming devices run here (their send times are the latency clock); the others, which only report
    # positions, in a process of their own with the screens (``bench.gb28181_load``), so their load does not
    # delay the viewers' clock in this one.
    load = [SimulatedDevice(device_id, password, ("127.0.0.1", sip_port), domain=DOMAIN, platform_id=PLATFORM,
                            seed=n, clip=clip, position_seconds=1.0, keepalive_seconds=30, on_sent=on_sent,
                            precise_time=True, linger_seconds=LINGER_S)
            for n, (_, (device_id, password)) in enumerate(units[:streams])]  # fmt: skip
    load_plan = folder / "load.json"
    load_plan.write_text(json.dumps({"devices": [[unit_id, *device] for unit_id, device in units[streams:]],
                                     "screen_login": plan["screen_login"]}))  # fmt: skip
    others: asyncio.subprocess.Process | None = None
    running: list[asyncio.Task[None]] = []
    # this process's own loop lag: its streaming devices and viewers are the forwarding latency's two clocks
    probe = asyncio.create_task(sample_forever(folder / "viewers-lag.jsonl"))
    viewers = []
    try:
        await server.wait_healthy()
        others = await asyncio.create_subprocess_exec(
            *pinned(1, [sys.executable, "-m", "bench.gb28181_load", "--url", server.url, "--sip",
                        f"127.0.0.1:{sip_port}", "--plan", str(load_plan), "--screens", str(screens), "--domain",
                        DOMAIN, "--platform-id", PLATFORM, "--lag-file", str(folder / "load-lag.jsonl")]),
            cwd=ROOT, stdout=subprocess.PIPE, limit=1 << 30,
        )  # fmt: skip
        await expect(others, "screens", 60)
        running = [asyncio.create_task(device.run(stop)) for device in load]
        registered = await expect(others, "registered", 60 + devices / 20)
        for _ in range(300):  # up to a minute for every registration
            if all(d.registered or t.done() for d, t in zip(load, running, strict=True)):
                break
            await asyncio.sleep(0.2)
        registered["registered"] += sum(d.registered for d in load)
        await asyncio.sleep(WARMUP_S)
        a0 = sample(server.pid)
        await asyncio.sleep(seconds)
        a1 = sample(server.pid)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/auth/login", json=plan["screen_login"]) as response:
                token = (await response.json())["token"]
            for unit_id, _ in units[:streams]:
                viewer = new_pc()
                transceiver = viewer.addTransceiver("video", direction="recvonly")

                def sink(mime: str, data: bytes, timestamp: int, clock_rate: int) -> None:
                    if not measuring[0]:
                        return
                    counts["received"] += 1
                    sent = sent_at.get(picture_key(data))
                    if sent is not None:
                        latencies.append((time.time() - sent) * 1000)

                passthrough.tap_receiver(transceiver.receiver, sink)
                await negotiate(http, viewer, f"{server.url}/api/whep/{unit_id}", {"Authorization": f"Bearer {token}"})
                viewers.append(viewer)
            await asyncio.gather(*(connected(v) for v in viewers))
            await asyncio.sleep(WARMUP_S)
            b0 = sample(server.pid)
            measuring[0] = True
            await asyncio.sleep(seconds)
            measuring[0] = False
            b1 = sample(server.pid)
    except Exception:
        lines = (folder / "server.log").read_text(errors="replace").splitlines()
        print(
            "\n".join([line for line in lines if "warning" in line.lower() or "error" in line.lower()][-15:]),
            flush=True,
        )
        raise
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        final = b""
        if others is not None:
            if others.returncode is None:
                others.send_signal(signal.SIGINT)
            assert others.stdout is not None
            final = await others.stdout.read()
            await others.wait()
        server.stop()
    result: dict[str, Any] = json.loads(final.splitlines()[-1])
    sent: dict[str, int] = result["sent"]
    sent.update((unit_id, d.positions_sent) for (unit_id, _), d in zip(units[:streams], load, strict=True))
    stored = await positions_stored(url)
    seen = [sum(by_unit.values()) for by_unit in result["seen"]]
    short = sorted(u for u, n in sent.items() if stored.get(u, 0) != n or any(s.get(u, 0) != n for s in result["seen"]))
    log_text = (folder / "server.log").read_text(errors="replace")
    cpu_a, cpu_b = cpu_share(a0, a1), cpu_share(b0, b1)
    return {
        "devices": devices, "registered": registered["registered"], "registration_failures": registered["failures"],
        "queue_full_warnings": log_text.count("UDP queue full"),
        "retransmissions": result["retransmissions"] + sum(d.retransmissions for d in load),
        "unanswered": result["unanswered"] + sum(d.messages_unanswered for d in load),
        "positions_refused": log_text.count("position refused"),
        "screens": screens, "sent": sum(sent.values()), "stored": sum(stored.values()), "seen": seen,
        "units_short": short[:5], "units_short_count": len(short),
        "screen_ms": latency(result["samples"], (a0.at, a1.at)),
        "screen_ms_with_streams": latency(result["samples"], (b0.at, b1.at)),
        "loop_lag_ms": loop_lag(folder / "loop-lag.jsonl", a0.at, a1.at),
        "loop_lag_ms_with_streams": loop_lag(folder / "loop-lag.jsonl", b0.at, b1.at),
        "load_loop_lag_ms": loop_lag(folder / "load-lag.jsonl", a0.at, b1.at),
        "viewers_loop_lag_ms": loop_lag(folder / "viewers-lag.jsonl", b0.at, b1.at),
        "waited_for_cpu_share": wait_share(a0, b1),
        "streams": streams, "cpu_share": cpu_a, "cpu_share_with_streams": cpu_b,
        "cpu_per_stream": (cpu_b - cpu_a) / max(1, streams), "frames_sent": counts["sent"],
        "lost_share": max(0.0, 1 - counts["received"] / counts["sent"]) if counts["sent"] else 0.0,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
    }  # fmt: skip


async def ws_level(devices: int, seconds: float, screens: int, work: Path) -> dict[str, Any]:
    """The same number of WebSocket units at 1 Hz to the same screens, on a fresh server with the same store and
    bus (``bench.telemetry``'s level)."""
    folder = work / "websocket"
    folder.mkdir()
    args = argparse.Namespace(store="sqlite", bus="memory://", screens=screens, duration=seconds, stall_trace=False)
    return await run_level(args, devices, folder)


def lost_positions(sent: int, stored: int, seen: list[int]) -> bool:
    return not (sent == stored and all(s == sent for s in seen))


def ms(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.0f} ms"


async def run(args: argparse.Namespace) -> int:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load on core 1, the server on core 0
    restrict_host_addresses(["127.0.0.1"])
    raise_file_limit(args.devices + 1024)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cc-bench-gb-") as tmp:
        work = Path(tmp)
        gb = await gb_level(args.devices, args.streams, args.seconds, args.screens, work)
        a, b = gb["screen_ms"], gb["screen_ms_with_streams"]
        print(f"\n== GB/T 28181: {gb['devices']} devices over SIP/UDP, MobilePosition at 1 Hz, {args.screens} "
              f"screens; {args.seconds:g} s positions alone, then {args.seconds:g} s with {gb['streams']} PS streams",
              flush=True)  # fmt: skip
        print(
            f"registered        {gb['registered']}/{gb['devices']} devices; UDP queue-full warnings "
            f"{gb['queue_full_warnings']}, positions refused {gb['positions_refused']}; MESSAGEs sent again "
            f"{gb['retransmissions']}, never answered {gb['unanswered']}"
        )
        print(
            f"positions         sent {gb['sent']}, stored {gb['stored']}, on each screen "
            f"{', '.join(map(str, gb['seen']))}"
            + (
                f"; {gb['units_short_count']} units short, e.g. {', '.join(gb['units_short'])}"
                if gb["units_short_count"]
                else ""
            )
        )
        print(
            f"device -> screen  p50 {ms(a['p50'])}, p99 {ms(a['p99'])}, max {ms(a['max'])} "
            f"({a['count'] / max(1, args.screens) / args.seconds:.0f} positions/s on each screen); with the streams: "
            f"p50 {ms(b['p50'])}, p99 {ms(b['p99'])}, max {ms(b['max'])}"
        )
        print(f"event loop        {lag_line(gb['loop_lag_ms'])} (in the server, positions alone)")
        print(f"                  {lag_line(gb['loop_lag_ms_with_streams'])} (with the streams)")
        load_lag = gb["load_loop_lag_ms"]
        print(
            f"load generator    lag p99 {load_lag['p99']:.0f} ms, max {load_lag['max']:.0f} ms (the devices' and "
            f"screens' process: its stalls count in the latencies above); server waited for a core "
            f"{gb['waited_for_cpu_share']:.0%} of the time"
        )
        shown = a["count"] / max(1, args.screens) / args.seconds  # positions a second the server took and showed
        print(
            f"server CPU        {gb['cpu_share']:.0%} of one core with positions alone "
            f"({gb['cpu_share'] / max(1.0, shown) * 1e6:.0f} µs per position shown), "
            f"{gb['cpu_share_with_streams']:.0%} with {gb['streams']} streams"
            + (f": {gb['cpu_per_stream']:.1%} per stream" if gb["streams"] else "")
        )
        print(f"streams           {gb['streams']} PS streams (H.264 main 640x480 25 fps) to one viewer each: added "
              f"forwarding latency p50 {ms(gb['p50_ms'])}, p99 {ms(gb['p99_ms'])}; frames lost {gb['lost_share']:.2%} "
              f"(devices' and viewers' process: lag p99 {ms(gb['viewers_loop_lag_ms']['p99'])}, max "
              f"{ms(gb['viewers_loop_lag_ms']['max'])})", flush=True)  # fmt: skip
        if gb["registered"] != gb["devices"]:
            failed.append(f"{gb['devices'] - gb['registered']} GB devices did not register "
                          f"({'; '.join(gb['registration_failures'])})")  # fmt: skip
        if lost_positions(gb["sent"], gb["stored"], gb["seen"]):
            failed.append(f"GB positions lost: sent {gb['sent']}, stored {gb['stored']}, on screens {gb['seen']}")
        if gb["streams"] and gb["p99_ms"] is None:
            failed.append("no GB video frame reached a viewer")
        figures = {"gb": gb}
        if args.websocket:
            ws = await ws_level(args.devices, args.seconds, args.screens, work)
            figures["websocket"] = ws
            seen = ws["screen_seen"]
            print(
                f"\n== WebSocket units: {args.devices} units at 1 Hz, {args.screens} screens; same store and bus, "
                "fresh server",
                flush=True,
            )
            print(
                f"positions         sent {ws['sent']}, stored {ws['stored_total']}, on each screen "
                f"{', '.join(map(str, seen))}; errors {ws['errors']}, unit failures {ws['unit_failure_count']}"
            )
            print(
                f"unit -> screen    p50 {ms(ws['screen_ms']['p50'])}, p99 {ms(ws['screen_ms']['p99'])}, "
                f"max {ms(ws['screen_ms']['max'])}"
            )
            print(f"event loop        {lag_line(ws['loop_lag_ms'])} (in the server)")
            print(f"server CPU        {ws['server_cpu_share']:.0%} of one core "
                  f"({ws['server_cpu_us_per_position']:.0f} µs per position)", flush=True)  # fmt: skip
            if lost_positions(ws["sent"], ws["stored_total"], seen):
                failed.append(f"WebSocket positions lost: sent {ws['sent']}, stored {ws['stored_total']}, on "
                              f"screens {seen}")  # fmt: skip
            print(
                f"\nposition latency  GB devices at {args.devices}: p99 {ms(a['p99'])} vs WebSocket units at "
                f"{args.devices}: p99 {ms(ws['screen_ms']['p99'])}",
                flush=True,
            )
        if args.whip:
            whip = await passthrough_level(encode_clip(work / "clip.vp8"), args.streams, args.seconds, work)
            figures["whip"] = whip
            print(f"\n== WHIP passthrough, same run: {args.streams} streams (VP8 640x480 30 fps): server CPU "
                  f"{whip['cpu_share']:.0%}, {whip['cpu_per_stream']:.1%} per stream; latency p99 "
                  f"{ms(whip['p99_ms'])}; {lag_line(whip['loop_lag_ms'])}", flush=True)  # fmt: skip
            print(f"CPU per stream    GB/T 28181 PS {gb['cpu_per_stream']:.1%} vs WHIP {whip['cpu_per_stream']:.1%}")
        print(json.dumps(figures, default=str), file=sys.stderr)
    for failure in failed:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="each measuring window")
    parser.add_argument("--screens", type=int, default=4, help="screens watching every unit (each decodes)")
    parser.add_argument(
        "--websocket",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure as many WebSocket units at 1 Hz on a fresh server",
    )
    parser.add_argument("--whip", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the WHIP passthrough at the same number of streams")  # fmt: skip
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
