"""Media benchmark: N synthetic 640×480 VP8 units at 30 fps, one viewer each, recording on, one server process.

    python -m bench.media --streams 10,20,40 --baseline 4

The command centre runs as a real process pinned to core 0 (SQLite, in-process bus, every session recorded).
The load — N units and N viewers, all aiortc — runs in this process on core 1. Units send a VP8 file
encoded once before the run (sent as encoded packets: the load does not spend the machine on encoding);
viewers tap their receivers (``media.passthrough``) so they do not decode either. Because the command centre
forwards frames untouched, a frame is recognised at the viewer by its bytes: forwarding latency is the
viewer's receive time minus the unit's send time of the same frame (same clock). Printed per N: server CPU
per stream, memory per session, latency p50/p99, frames lost.

Baseline, in the same run: the same load through aiortc's ordinary path (``bench.media_baseline``: decode
once, ``MediaRelay``, re-encode per viewer and for a ``MediaRecorder``) at ``--baseline`` streams; its CPU per
stream against the passthrough's gives the streams-per-core ratio. (Its frames are re-encoded, so the bytes
differ and latency is not matched there; frames received are counted.)

The load's own event-loop lag is printed beside the server's: a stall of the load (both ends of every stream
live in it) counts in the latencies as much as one of the server. ``--stall-trace`` also runs the server's
stall tracer (``server.stall_trace_file``, command_center/stall_trace.py) and prints what its loop ran in the
stalls of the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.harness import ROOT, Server, answers, free_port, loop_lag, loop_lag_env, percentile, sample, stalls
from bench.telemetry import prepare
from command_center.loop_lag import FLUSH_EVERY, sample_forever
from media import passthrough
from media.ice import restrict_host_addresses

FPS = 30
WIDTH, HEIGHT = 640, 480
WARMUP_S = 4.0


def encode_clip(path: Path, seconds: float = 10.0, bitrate: int = 600_000) -> list[tuple[bytes, bool]]:
    """A moving 640×480 picture encoded once to VP8 (keyframe every second); the packets and keyframe flags."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.bit_rate = bitrate
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": str(FPS)}
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    packets: list[tuple[bytes, bool]] = []
    for i in range(int(seconds * FPS)):
        image = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y + 6 * i) % 256], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    packets += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    path.write_bytes(b"".join(d for d, _ in packets))  # kept for inspection only
    return packets


class ClipTrack(MediaStreamTrack):
    """Sends the pre-encoded clip in a loop at 30 fps, as encoded packets, noting when each frame left."""

    kind = "video"

    def __init__(self, clip: list[tuple[bytes, bool]], sent: dict[bytes, float], counter: list[int]) -> None:
        super().__init__()
        self._clip, self._sent, self._counter = clip, sent, counter
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index / FPS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        data, _ = self._clip[self._index % len(self._clip)]
        packet = av.Packet(data)
        packet.pts = self._index * (90_000 // FPS)
        packet.time_base = fractions.Fraction(1, 90_000)
        self._index += 1
        self._sent[hashlib.blake2b(data, digest_size=8).digest()] = time.time()
        self._counter[0] += 1
        return packet


@dataclass
class Stream:
    unit_pc: RTCPeerConnection
    viewer_pc: RTCPeerConnection | None = None
    sent: dict[bytes, float] = field(default_factory=dict)
    sent_count: list[int] = field(default_factory=lambda: [0])
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    measuring: bool = False


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str, headers: dict[str, str]) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp,
                         headers={**headers, "Content-Type": "application/sdp"}) as response:  # fmt: skip
        answer = await response.text()
        if response.status != 201:
            raise RuntimeError(f"{url}: {response.status} {answer[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def connected(pc: RTCPeerConnection, within: float = 30.0) -> None:
    give_up = time.monotonic() + within
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > give_up:
            raise RuntimeError(f"peer connection {pc.connectionState}")
        await asyncio.sleep(0.05)


async def run_streams(
    http: aiohttp.ClientSession, clip: list[tuple[bytes, bool]], count: int, *,
    whip: Callable[[int], tuple[str, dict[str, str]]], whep: Callable[[int], tuple[str, dict[str, str]]],
    match_bytes: bool, seconds: float, server_pid: int,
) -> dict[str, Any]:  # fmt: skip
    streams: list[Stream] = []
    for i in range(count):
        stream = Stream(new_pc())
        stream.unit_pc.addTransceiver(ClipTrack(clip, stream.sent, stream.sent_count), direction="sendonly")
        url, headers = whip(i)
        await negotiate(http, stream.unit_pc, url, headers)
        streams.append(stream)
    await asyncio.gather(*(connected(s.unit_pc) for s in streams))
    await asyncio.sleep(1.0)  # the first keyframes arrive
    for i, stream in enumerate(streams):
        viewer = stream.viewer_pc = new_pc()
        transceiver = viewer.addTransceiver("video", direction="recvonly")

        def sink(mime: str, data: bytes, timestamp: int, clock_rate: int, s: Stream = stream) -> None:
            if not s.measuring:
                return
            s.received += 1
            if match_bytes:
                sent = s.sent.get(hashlib.blake2b(data, digest_size=8).digest())
                if sent is not None:
                    s.latencies.append((time.time() - sent) * 1000)

        if match_bytes:
            passthrough.tap_receiver(transceiver.receiver, sink)
            viewer.on("track", lambda track: asyncio.ensure_future(_drain(track)))
        else:  # the baseline's viewers decode what they get (its frames are re-encoded anyway)
            viewer.on("track", lambda track, s=stream: asyncio.ensure_future(_count(track, s)))
        url, headers = whep(i)
        await negotiate(http, viewer, url, headers)
    await asyncio.gather(*(connected(s.viewer_pc) for s in streams if s.viewer_pc is not None))
    await asyncio.sleep(WARMUP_S)
    before = sample(server_pid)
    sent_before = [s.sent_count[0] for s in streams]
    for stream in streams:
        stream.measuring = True
    await asyncio.sleep(seconds)
    for stream in streams:
        stream.measuring = False
    # frames sent in the window: counted when it closes, not after the wait below (the clips go on sending, and
    # counting those made about a tenth of the frames look lost)
    sent = sum(s.sent_count[0] - b for s, b in zip(streams, sent_before, strict=True))
    after = sample(server_pid)
    await asyncio.sleep(FLUSH_EVERY + 0.1)  # the server's loop-lag probe writes a line a second
    received = sum(s.received for s in streams)
    latencies = [v for s in streams for v in s.latencies]
    await asyncio.gather(*(pc.close() for s in streams for pc in (s.unit_pc, s.viewer_pc) if pc is not None))
    cpu = (after.cpu_seconds - before.cpu_seconds) / (after.at - before.at)
    return {
        "streams": count, "cpu_share": cpu, "cpu_per_stream": cpu / count, "rss_mib": after.rss_mib,
        "sent": sent, "received": received, "lost_share": max(0.0, 1 - received / sent) if sent else 0.0,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "window": (before.at, after.at),
    }  # fmt: skip


async def _drain(track: MediaStreamTrack) -> None:
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


async def _count(track: MediaStreamTrack, stream: Stream) -> None:
    try:
        while True:
            await track.recv()
            if stream.measuring:
                stream.received += 1
    except MediaStreamError:
        pass


async def passthrough_level(
    clip: list[tuple[bytes, bool]], count: int, seconds: float, work: Path, *, stall_trace: bool = False
) -> dict[str, Any]:
    db = work / f"media-{count}"
    db.mkdir()
    url = f"sqlite:///{db / 'bench.db'}"
    plan = await prepare(url, count)
    port = free_port()
    env = {"CC_STORE__URL": url, "CC_DATA_DIR": str(db), "CC_CONFIG": "", "CC_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
           "CC_MEDIA__MAX_SESSIONS": str(4 * count + 8),
           # one operator watches every stream: lift the per-user and per-court caps meant for real users
           "CC_MEDIA__MAX_SESSIONS_PER_USER": str(4 * count + 8),
           "CC_MEDIA__MAX_SESSIONS_PER_COURT": str(4 * count + 8),
           "CC_MEDIA__SEGMENT_SECONDS": "10",
           **loop_lag_env(db / "loop-lag.jsonl"),
           **({"CC_SERVER__STALL_TRACE_FILE": str(db / "stalls.jsonl")} if stall_trace else {})}  # fmt: skip
    server = Server(env, port=port, core=0)
    server.start(db / "server.log")
    probe = asyncio.create_task(sample_forever(db / "load-lag.jsonl"))  # this process: units and viewers
    try:
        await server.wait_healthy()
        secrets = list(plan["units"].items())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/auth/login", json=plan["screen_login"]) as response:
                token = (await response.json())["token"]
            result = await run_streams(
                http, clip, count,
                whip=lambda i: (f"{server.url}/api/whip", {"Authorization": f"Bearer {secrets[i][1]}"}),
                whep=lambda i: (f"{server.url}/api/whep/{secrets[i][0]}", {"Authorization": f"Bearer {token}"}),
                match_bytes=True, seconds=seconds, server_pid=server.pid,
            )  # fmt: skip
        result["rss_per_session_mib"] = result["rss_mib"] / (2 * count)
        window = result.pop("window")
        result["loop_lag_ms"] = loop_lag(db / "loop-lag.jsonl", *window)
        result["load_loop_lag_ms"] = loop_lag(db / "load-lag.jsonl", *window)
        if stall_trace:
            result["stalls"] = stalls(db / "stalls.jsonl", *window)
        return result
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)  # its last line is written before the folder goes
        server.stop()


async def baseline_level(clip: list[tuple[bytes, bool]], count: int, seconds: float, work: Path) -> dict[str, Any]:
    folder = work / f"baseline-{count}"
    folder.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "bench.media_baseline", "--port", str(port), "--folder", str(folder)]
    if (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "0", *command]
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        if not await answers(f"http://127.0.0.1:{port}/health", 30, alive=lambda: process.poll() is None):
            raise RuntimeError("the baseline server did not start")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            result = await run_streams(
                http, clip, count, whip=lambda i: (f"{base}/whip/u{i}", {}), whep=lambda i: (f"{base}/whep/u{i}", {}),
                match_bytes=False, seconds=seconds, server_pid=process.pid,
            )  # fmt: skip
        result["rss_per_session_mib"] = result["rss_mib"] / (2 * count)
        result.pop("window")
        return result
    finally:
        process.send_signal(2)
        process.wait(20)


async def run(args: argparse.Namespace) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load on core 1, the server on core 0
    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="cc-bench-media-") as tmp:
        work = Path(tmp)
        clip = encode_clip(work / "clip.vp8")
        mean_kbps = sum(len(d) for d, _ in clip) * 8 / (len(clip) / FPS) / 1000
        print(f"clip: {len(clip)} VP8 frames {WIDTH}x{HEIGHT} @ {FPS} fps, {mean_kbps:.0f} kbit/s; {args.seconds:g} s "
              "measured per level after a warm-up", flush=True)  # fmt: skip
        header = (f"{'path':<12} {'streams':>7} {'server CPU':>10} {'CPU/stream':>10} {'RSS/session':>11} "
                  f"{'p50':>7} {'p99':>7} {'frames lost':>11} {'loop lag p99/max':>16}")  # fmt: skip
        print(header, flush=True)
        results = []
        for count in [int(n) for n in args.streams.split(",")]:
            level = await passthrough_level(clip, count, args.seconds, work, stall_trace=args.stall_trace)
            results.append(("passthrough", level))
            _print(*results[-1])
            _print_loads(level)
        if args.baseline:
            results.append(("decode path", await baseline_level(clip, args.baseline, args.seconds, work)))
            _print(*results[-1])
            base = results[-1][1]["cpu_per_stream"]
            passthrough_cpu = min(r["cpu_per_stream"] for name, r in results if name == "passthrough")
            print(f"streams per core: passthrough {1 / passthrough_cpu:.0f}, decode path {1 / base:.1f} "
                  f"(ratio {base / passthrough_cpu:.1f}x)", flush=True)  # fmt: skip
        if args.json:
            await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=2))


def _print(name: str, r: dict[str, Any]) -> None:
    p50 = "—" if r["p50_ms"] is None else f"{r['p50_ms']:.1f}ms"
    p99 = "—" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}ms"
    lag = r.get("loop_lag_ms")  # the server's own event loop (the decode-path baseline is not our server)
    lag_text = "—" if lag is None else f"{lag['p99']:.0f}/{lag['max']:.0f}ms"
    print(f"{name:<12} {r['streams']:>7} {r['cpu_share']:>9.0%} {r['cpu_per_stream']:>9.1%} "
          f"{r['rss_per_session_mib']:>9.1f}MiB {p50:>7} {p99:>7} {r['lost_share']:>10.2%} "
          f"{lag_text:>16}", flush=True)  # fmt: skip


def _print_loads(r: dict[str, Any]) -> None:
    load = r["load_loop_lag_ms"]
    print(f"  load generator loop lag p99/max {load['p99']:.0f}/{load['max']:.0f} ms (its stalls count in the "
          "latencies too)", flush=True)  # fmt: skip
    if "stalls" in r:
        found = r["stalls"]
        print(f"  server stalls: {found['count']} (longest {found['max_ms']:.0f} ms, {found['total_ms']} ms in all, "
              f"{found['with_gc']} with a collector pass); in them the loop ran {found['loop_cpu_ms']} ms, waited "
              f"for a core {found['loop_waited_ms']} ms, other threads ran {found['others_cpu_ms']} ms; "
              "sampled most while stalled:", flush=True)  # fmt: skip
        for count, site in found["sites"]:
            print(f"    {count:>4}  {site}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="10,20,40", help="comma-separated numbers of concurrent streams")
    parser.add_argument("--baseline", type=int, default=4, help="streams through the decode path (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--stall-trace", action="store_true", help="run the server's stall tracer and print its window's stalls"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
