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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import ROOT, Server, free_port, percentile, sample
from bench.media import connected, encode_clip, negotiate, new_pc, passthrough_level
from bench.telemetry import prepare
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


async def positions_stored(url: str) -> int:
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        return sum([await store.count_positions(u.id) for u in await store.list_units()])
    finally:
        await store.close()


async def gb_level(devices: int, streams: int, seconds: float, work: Path) -> dict[str, Any]:
    folder = work / "gb28181"
    folder.mkdir()
    url = f"sqlite:///{folder / 'bench.db'}"
    plan = await prepare(url, devices)
    enrolled = await enrol_devices(url, list(plan["units"]))
    sip_port, port = free_port(), free_port()
    env = {"CC_STORE__URL": url, "CC_DATA_DIR": str(folder), "CC_CONFIG": "",
           "CC_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
           "CC_MEDIA__MAX_SESSIONS": str(4 * streams + 8), "CC_MEDIA__SEGMENT_SECONDS": "10",
           "CC_GB28181__ENABLED": "true", "CC_GB28181__SIP_HOST": "127.0.0.1", "CC_GB28181__SIP_PORT": str(sip_port),
           "CC_GB28181__RTP_PORT_RANGE": "37000-37999", "CC_GB28181__MAX_EXPIRES_SECONDS": "3600",
           "CC_GB28181__FAILED_REGISTERS_PER_MINUTE": "100000"}  # fmt: skip
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
    # positions, in a process of their own (``python -m simulators.gb28181``), so their load does not delay
    # the viewers' clock in this one.
    load = [SimulatedDevice(device_id, password, ("127.0.0.1", sip_port), domain=DOMAIN, platform_id=PLATFORM,
                            seed=n, clip=clip, position_seconds=1.0, keepalive_seconds=30, on_sent=on_sent)
            for n, (_, (device_id, password)) in enumerate(units[:streams])]  # fmt: skip
    secrets = folder / "devices.json"
    secrets.write_text(json.dumps(dict(enrolled.values())))
    others = subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurement)
        [sys.executable, "-m", "simulators.gb28181", "--sip", f"127.0.0.1:{sip_port}", "--devices",
         str(devices - streams), "--first", str(streams + 1), "--video", "0", "--position-seconds", "1",
         "--domain", DOMAIN, "--platform-id", PLATFORM, "--secrets", str(secrets)],
        cwd=ROOT, stdout=(folder / "devices.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    running: list[asyncio.Task[None]] = []
    viewers = []
    try:
        await server.wait_healthy()
        running = [asyncio.create_task(device.run(stop)) for device in load]
        for _ in range(300):  # up to a minute for every registration
            if all(d.registered for d in load):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(max(0.0, devices / 200 - 5))  # the other process's devices register meanwhile
        registered = sum(d.registered for d in load)
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
            positions_before = await positions_stored(url)
            before = sample(server.pid)
            measuring[0] = True
            await asyncio.sleep(seconds)
            measuring[0] = False
            after = sample(server.pid)
            positions = await positions_stored(url) - positions_before
        cpu = (after.cpu_seconds - before.cpu_seconds) / (after.at - before.at)
        sent = counts["sent"]
        log_text = (folder / "server.log").read_text(errors="replace")
        registered_all = log_text.count(" registered from ")
        dropped = log_text.count("UDP queue full")
        return {
            "devices": devices, "registered_streaming": registered, "registrations": registered_all,
            "queue_full_warnings": dropped, "streams": streams, "cpu_share": cpu,
            "cpu_per_stream": cpu / max(1, streams), "positions_per_s": positions / seconds,
            "lost_share": max(0.0, 1 - counts["received"] / sent) if sent else 0.0,
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None,
        }  # fmt: skip
    except Exception:
        lines = (folder / "server.log").read_text(errors="replace").splitlines()
        print("\n".join([line for line in lines if "WARNING" in line or "ERROR" in line][-15:]), flush=True)
        raise
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        others.send_signal(2)
        others.wait(20)
        server.stop()


async def run(args: argparse.Namespace) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load on core 1, the server on core 0
    restrict_host_addresses(["127.0.0.1"])
    raise_file_limit(args.devices + 1024)
    with tempfile.TemporaryDirectory(prefix="cc-bench-gb-") as tmp:
        work = Path(tmp)
        gb = await gb_level(args.devices, args.streams, args.seconds, work)
        p50 = "—" if gb["p50_ms"] is None else f"{gb['p50_ms']:.1f} ms"
        p99 = "—" if gb["p99_ms"] is None else f"{gb['p99_ms']:.1f} ms"
        print(f"GB/T 28181: {gb['devices']} devices ({gb['registrations']} registrations logged, "
              f"{gb['queue_full_warnings']} queue-full warnings), {gb['registered_streaming']}/{gb['streams']} "
              f"streaming ones registered, {gb['positions_per_s']:.0f} positions/s stored; {gb['streams']} PS "
              f"streams (H.264 main 640x480 25 fps) to one viewer each: server CPU {gb['cpu_share']:.0%}, "
              f"{gb['cpu_per_stream']:.1%} per stream (positions included); added forwarding latency p50 {p50}, "
              f"p99 {p99}; frames lost {gb['lost_share']:.2%}", flush=True)  # fmt: skip
        if args.whip:
            whip = await passthrough_level(encode_clip(work / "clip.vp8"), args.streams, args.seconds, work)
            print(f"WHIP passthrough, same run: {args.streams} streams (VP8 640x480 30 fps): server CPU "
                  f"{whip['cpu_share']:.0%}, {whip['cpu_per_stream']:.1%} per stream; latency p99 "
                  f"{whip['p99_ms']:.1f} ms", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--whip", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the WHIP passthrough at the same number of streams")  # fmt: skip
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
