"""Consultation room benchmark (issue 18): one room of 6 participants on one server process — 4 centres
publishing audio and video, the room's unit publishing video over WHIP, and 1 member who only views — each
receiving every other participant's video (centres: 3 centres + the unit; the viewer: 4 centres + the unit).

    python -m bench.rooms --seconds 10

The command centre runs as a real process pinned to core 0 (SQLite, in-process bus); the participants (aiortc)
run here on core 1. Senders send a VP8 clip and an Opus tone encoded once before the run (as encoded packets);
receivers tap their receivers (``media.passthrough``) and decode nothing. Frames are forwarded untouched, so a
frame is recognised at a receiver by its bytes: the added forwarding latency is its receive time minus its
sender's send time (same clock). Printed: latency p50/p99 over every video receiver, server CPU (total and per
participant), the server's event-loop lag, frames lost; and the baseline measured in the same run, one unit
viewed by one operator through the same server (``bench.media``'s passthrough level, one stream).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from bench.harness import Server, free_port, lag_line, loop_lag, loop_lag_env, percentile, sample
from bench.media import WARMUP_S, ClipTrack, _drain, connected, encode_clip, negotiate, new_pc, passthrough_level
from bench.telemetry import prepare
from command_center.credentials import Passwords
from command_center.loop_lag import FLUSH_EVERY
from config.settings import AuthSettings, StoreSettings
from core.ids import CourtId
from media import passthrough
from media.ice import restrict_host_addresses
from persistence.factory import build_store
from persistence.models import Role

CENTRES = 4
PASSWORD = "bench-rooms-密码-2026"
OPUS_FRAME = 960  # 20 ms at 48 kHz


def encode_tone(seconds: float = 10.0) -> list[bytes]:
    """A 440 Hz tone encoded once to Opus, 20 ms a packet."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "stereo", "s16"
    encoder.bit_rate = 32_000
    packets: list[bytes] = []
    for i in range(int(seconds * 50)):
        t = (np.arange(OPUS_FRAME) + i * OPUS_FRAME) / 48_000
        tone = (np.sin(2 * np.pi * 440 * t) * 8_000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, i * OPUS_FRAME
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


class ToneTrack(MediaStreamTrack):
    """Sends the pre-encoded Opus packets in a loop, 20 ms apart."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._index * 0.02 - time.monotonic()))
        packet = av.Packet(self._packets[self._index % len(self._packets)])
        packet.pts, packet.time_base = self._index * OPUS_FRAME, fractions.Fraction(1, 48_000)
        self._index += 1
        return packet


class Sender:
    """A participant's (or the unit's) outgoing clip: each frame's send time by its bytes."""

    def __init__(self, name: str, clip: list[tuple[bytes, bool]], tone: list[bytes] | None) -> None:
        self.name = name
        self.sent: dict[bytes, float] = {}
        self.count = [0]
        self.pc = new_pc()
        self.pc.addTransceiver(ClipTrack(clip, self.sent, self.count), direction="sendonly")
        if tone is not None:
            self.pc.addTransceiver(ToneTrack(tone), direction="sendonly")


class Receiver:
    """One receive-only peer connection of one participant, for one sender's video."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.pc: RTCPeerConnection = new_pc()
        self.latencies: list[float] = []
        self.received = 0
        self.measuring = False
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        passthrough.tap_receiver(transceiver.receiver, self._sink)
        self.pc.on("track", lambda track: asyncio.ensure_future(_drain(track)))

    def _sink(self, mime: str, data: bytes, timestamp: int, clock_rate: int) -> None:
        if not self.measuring:
            return
        self.received += 1
        sent = self.sender.sent.get(hashlib.blake2b(data, digest_size=8).digest())
        if sent is not None:
            self.latencies.append((time.time() - sent) * 1000)


async def _people(url: str, unit_court: str) -> int:
    """The centres' people and a case of the unit's court; returns the case id."""
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        passwords = Passwords(AuthSettings())
        for name in [f"centre{i}" for i in range(CENTRES)] + ["viewer"]:
            await store.add_user(username=name, display_name=name, password_hash=passwords.hash(PASSWORD),
                                 role=Role.SUPERVISOR, court_id=CourtId("HLJ"))  # fmt: skip
        case = await store.add_case(case_number="(2026)压测执1号", court_id=CourtId(unit_court), title="压测会商",
                                    created_by=None, created_ms=0)  # fmt: skip
        return case.id
    finally:
        await store.close()


async def room_level(clip: list[tuple[bytes, bool]], tone: list[bytes], seconds: float, work: Path) -> dict[str, Any]:
    db = work / "room"
    db.mkdir()
    url = f"sqlite:///{db / 'bench.db'}"
    plan = await prepare(url, 1)
    ((unit_id, unit_secret),) = plan["units"].items()
    case_id = await _people(url, await _unit_court(url, unit_id))
    env = {"CC_STORE__URL": url, "CC_DATA_DIR": str(db), "CC_CONFIG": "", "CC_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
           "CC_MEDIA__MAX_SESSIONS": "64", "CC_MEDIA__RECORD_SESSIONS": "false",
           **loop_lag_env(db / "loop-lag.jsonl")}  # fmt: skip
    server = Server(env, port=free_port(), core=0)
    server.start(db / "server.log")
    try:
        await server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            return await _confer(http, server, clip, tone, seconds, unit_id, unit_secret, case_id, db)
    finally:
        server.stop()


async def _unit_court(url: str, unit_id: str) -> str:
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        return str((await store.get_unit(unit_id)).court_id)  # type: ignore[arg-type]
    finally:
        await store.close()


async def _confer(
    http: aiohttp.ClientSession, server: Server, clip: list[tuple[bytes, bool]], tone: list[bytes], seconds: float,
    unit_id: str, unit_secret: str, case_id: int, db: Path,
) -> dict[str, Any]:  # fmt: skip
    base = server.url
    tokens, ids = {}, {}
    for name in [f"centre{i}" for i in range(CENTRES)] + ["viewer"]:
        async with http.post(f"{base}/api/auth/login", json={"username": name, "password": PASSWORD}) as response:
            body = await response.json()
            tokens[name], ids[name] = body["token"], body["user"]["id"]
    auth = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    invited = [ids[n] for n in ids if n != "centre0"]
    async with http.post(f"{base}/api/rooms", headers=auth["centre0"], json={
            "title": "压测会商", "case_id": case_id, "unit_id": unit_id, "invited": invited}) as response:  # fmt: skip
        room_id = (await response.json())["room"]["id"]
    for name in ids:
        if name != "centre0":
            async with http.post(f"{base}/api/rooms/{room_id}/join", headers=auth[name]) as response:
                assert response.status == 200, await response.text()

    unit = Sender("unit", clip, None)
    await negotiate(http, unit.pc, f"{base}/api/whip", {"Authorization": f"Bearer {unit_secret}"})
    centres = {f"centre{i}": Sender(f"centre{i}", clip, tone) for i in range(CENTRES)}
    for name, sender in centres.items():
        await negotiate(http, sender.pc, f"{base}/api/rooms/{room_id}/media/publish", auth[name])
    await asyncio.gather(*(connected(s.pc) for s in [unit, *centres.values()]))
    await asyncio.sleep(1.0)  # the first keyframes arrive
    receivers: list[Receiver] = []
    for name in ids:
        for other, sender in centres.items():
            if other == name:
                continue
            receiver = Receiver(sender)
            await negotiate(http, receiver.pc, f"{base}/api/rooms/{room_id}/media/participants/{ids[other]}/view",
                            auth[name])  # fmt: skip
            receivers.append(receiver)
        receiver = Receiver(unit)
        await negotiate(http, receiver.pc, f"{base}/api/whep/{unit_id}", auth[name])
        receivers.append(receiver)
    await asyncio.gather(*(connected(r.pc) for r in receivers))
    await asyncio.sleep(WARMUP_S)
    before = sample(server.pid)
    sent_before = {id(r): r.sender.count[0] for r in receivers}
    for receiver in receivers:
        receiver.measuring = True
    await asyncio.sleep(seconds)
    for receiver in receivers:
        receiver.measuring = False
    sent = sum(r.sender.count[0] - sent_before[id(r)] for r in receivers)  # in the window, not during the wait below
    after = sample(server.pid)
    await asyncio.sleep(FLUSH_EVERY + 0.1)
    received = sum(r.received for r in receivers)
    latencies = [v for r in receivers for v in r.latencies]
    await asyncio.gather(*(pc.close() for pc in [unit.pc, *(s.pc for s in centres.values()),
                                                   *(r.pc for r in receivers)]))  # fmt: skip
    cpu = (after.cpu_seconds - before.cpu_seconds) / (after.at - before.at)
    participants = CENTRES + 2
    return {"participants": participants, "receivers": len(receivers), "cpu_share": cpu,
            "cpu_per_participant": cpu / participants, "rss_mib": after.rss_mib,
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None,
            "lost_share": max(0.0, 1 - received / sent) if sent else 0.0,
            "loop_lag_ms": loop_lag(db / "loop-lag.jsonl", before.at, after.at)}  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the participants on core 1, the server on core 0
    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="cc-bench-rooms-") as tmp:
        work = Path(tmp)
        clip = encode_clip(work / "clip.vp8")
        tone = encode_tone()
        print(f"room: {CENTRES} centres (VP8 640x480 30 fps + Opus) + 1 unit (VP8) + 1 viewer; "
              f"{args.seconds:g} s measured after a warm-up", flush=True)  # fmt: skip
        room = await room_level(clip, tone, args.seconds, work)
        base = await passthrough_level(clip, 1, args.seconds, work)
        _line("room", room["participants"], room["receivers"], room["cpu_share"], room["cpu_per_participant"],
              room, room["loop_lag_ms"])  # fmt: skip
        # One-to-one: a unit and its viewer are the two participants of that session.
        _line("one-to-one", 2, 1, base["cpu_share"], base["cpu_share"] / 2, base, base["loop_lag_ms"])


def _line(name: str, participants: int, receivers: int, cpu: float, per: float, r: dict[str, Any],
          lag: dict[str, Any]) -> None:  # fmt: skip
    p50 = "—" if r["p50_ms"] is None else f"{r['p50_ms']:.1f}ms"
    p99 = "—" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}ms"
    print(f"{name:<11} participants {participants} video receivers {receivers:>2}: server CPU {cpu:.0%} "
          f"({per:.1%} per participant), latency p50 {p50} p99 {p99}, frames lost {r['lost_share']:.2%}, "
          f"event loop {lag_line(lag)}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
