"""Load for the telemetry benchmark, run in its own process: N units at a fixed rate, M screens.

Units speak the real protocol (docs/protocols.md) on the real unit socket and wait for each ack, as
``field_device.client`` does; screens log in like a wall display and measure unit→screen latency with
the fix time the unit stamped (same machine, same clock). Prints one JSON object of figures.

The generator must cost little and never stall, or it measures itself: its stalls count as the server's
latency. So units and screens are bare WebSocket protocols on uvloop (bench/raw_websocket.py: no task, no
future per message), and what lives to the end (10,000 sockets and their state) is frozen out of the
collector's passes before the measuring window. The lag of its own loop goes to ``--lag-file``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
import orjson
import uvloop

from bench.harness import percentile, print_line, tune_gc
from bench.raw_websocket import RawWebSocket, connect
from command_center.loop_lag import sample_forever

SLICE_MS = 5_000  # the window's acks are also reported per slice this long: a run may change regime midway


def ack_p99_by_slice(figures: Figures) -> list[float]:
    """Ack p99 in each slice of the window: whether a run stayed below its server's core, or when it went over."""
    slices: dict[int, list[float]] = {}
    for latency, index in zip(figures.ack_ms, figures.ack_slice, strict=True):
        slices.setdefault(index, []).append(latency)
    return [percentile(slices[index], 99) for index in sorted(slices)]


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
        #: Per ack in ``ack_ms``, the slice of the window (``SLICE_S`` long) its position was sent in: an array
        #: of machine integers, nothing more for this process's collector to walk.
        self.ack_slice = array.array("I")
        self.window_start_ms = 0
        self.screen_ms: list[float] = []
        self.screen_positions = 0  # positions seen by the measuring screens
        self.screen_bytes = 0  # bytes read by the other screens in the measuring window
        self.last_sent: dict[str, int] = {}
        self.screen_last: list[dict[str, int]] = []
        self.screen_seen: list[dict[str, set[int]]] = []  # per measuring screen: unit → fix times shown (trails too)
        self.measuring = False
        self.connected = 0  # units whose socket is open (handshake done)
        self.all_connected = asyncio.Event()
        self.units_expected = 0


class Pacer:
    """Runs each unit's next send at its time, for all units with one timer ticking every ``TICK`` seconds.

    A timer per position (10,000 a second) woke the loop for one or two sockets at a time; in slots of
    ``TICK`` the sends of a slot go out together and their acks come back together, so each wake of the loop
    (an epoll wait, the timer heap) serves dozens of units. A send goes at most ``TICK`` late; the unit stamps
    its fix time when it sends, so no latency measured includes the wait."""

    TICK = 0.005

    def __init__(self) -> None:
        self._due: dict[int, list[Callable[[], None]]] = {}
        self._next_slot = int(time.monotonic() / self.TICK) + 1
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(self.TICK, self._tick)

    def at(self, when: float, send: Callable[[], None]) -> None:
        """Call ``send`` at ``when`` (time.monotonic()) or within a tick after; a time past goes at the next tick."""
        slot = max(int(when / self.TICK) + 1, self._next_slot)
        if (sends := self._due.get(slot)) is None:
            self._due[slot] = [send]
        else:
            sends.append(send)

    def close(self) -> None:
        self._timer.cancel()

    def _tick(self) -> None:
        now_slot = int(time.monotonic() / self.TICK)
        while self._next_slot <= now_slot:
            sends = self._due.pop(self._next_slot, ())
            self._next_slot += 1
            for send in sends:
                send()
        self._timer = self._loop.call_later(self.TICK, self._tick)


class Unit(RawWebSocket):
    """One unit on its own socket (bench/raw_websocket.py: aiohttp's client cost more than the server it drove).

    As ``field_device.client`` does, the unit sends a position and waits for its ack before the next; the
    positions are paced at ``rate`` from the first (by the ``Pacer``: no timer, no task of its own). ``done``
    resolves when the unit has finished: at ``stop`` (its last position acked), or early, counted in
    ``errors``, when the socket ends under it; the connection or the handshake failing is the caller's unit failure."""

    def __init__(self, url: SplitResult, unit_id: str, secret: str, rate: float, stop: float, figures: Figures,
                 rng: random.Random, pacer: Pacer) -> None:  # fmt: skip
        super().__init__("/api/telemetry/ws", url.netloc, secret, rng)
        self._pacer = pacer
        self.unit_id = unit_id
        self._period = 1 / rate
        self._stop = stop
        self._figures = figures
        self._lat, self._lon = 45.757 + rng.uniform(-0.08, 0.08), 126.642 + rng.uniform(-0.12, 0.12)
        self._seq = 0
        self._sent_at = 0
        self._next_at = 0.0
        self._awaiting = False  # a position is out, its ack not yet in

    def on_open(self) -> None:
        figures = self._figures
        figures.connected += 1
        if figures.connected == figures.units_expected:
            figures.all_connected.set()
        delay = self._rng.uniform(0, self._period)  # spread the units over the second
        self._next_at = time.monotonic() + delay
        self._pacer.at(self._next_at, self._send)

    def stop_at(self, stop: float) -> None:
        """When the unit sends no more (set once every unit is connected: the warm-up and window follow)."""
        self._stop = stop

    def _send(self) -> None:
        """The next position, unless the run is over (then goodbye: its last position is acked already)."""
        if self.closing:
            return
        if time.monotonic() >= self._stop:
            self.close()
            return
        self._seq += 1
        self._lat += self._rng.uniform(-1e-4, 1e-4)
        self._lon += self._rng.uniform(-1e-4, 1e-4)
        self._sent_at = sent_at = now_ms()
        message = {"seq": self._seq, "fix_time_ms": sent_at, "lat": self._lat, "lon": self._lon, "accuracy_m": 5.0,
                   "speed_mps": 1.4, "heading_deg": 90.0, "battery_pct": 77.0}  # fmt: skip
        self.send_text(orjson.dumps(message))
        self._awaiting = True
        self._figures.sent += 1
        self._figures.last_sent[self.unit_id] = self._seq

    def on_text(self, payload: bytes) -> None:
        figures = self._figures
        ack = orjson.loads(payload)
        if not self._awaiting:  # something the server pushed between positions
            figures.errors += 1
            return
        self._awaiting = False
        if ack.get("type") != "ack":  # an error reply: counted, and the next position goes at once
            figures.errors += 1
            self._send()
            return
        figures.stored += len(ack["stored"])
        figures.duplicates += len(ack["duplicates"])
        figures.rejected += len(ack["rejected"])
        if figures.measuring:
            figures.ack_ms.append(now_ms() - self._sent_at)
            figures.ack_slice.append(max(0, self._sent_at - figures.window_start_ms) // SLICE_MS)
        self._next_at += self._period
        self._pacer.at(self._next_at, self._send)

    def on_end(self) -> None:
        """The socket ended under the unit: one error, as the aiohttp unit counted a reply that was not a
        text message; it sends no more positions."""
        self._figures.errors += 1


async def run_unit(unit: Unit, url: SplitResult, connecting: asyncio.Semaphore) -> None:
    """Connect one unit and run it to its end (raises what made it fail). ``connecting`` bounds the handshakes
    under way: a server on a busy core accepts slower than the ramp connects, its listen queue overflows and
    units are reset (hundreds at 10,000); the aiohttp units were slow enough to connect that it never did."""
    async with connecting:
        await connect(unit, url.hostname or "localhost", url.port or 80)
    await unit.done


class Screen(RawWebSocket):
    """A screen socket subscribed to ``units``; measuring screens decode every frame, the others count its
    bytes only (a real wall display decodes too, but on its own machine, not on the load generator's core).
    It reads until ``main`` closes it (``caught_up``)."""

    def __init__(self, url: SplitResult, token: str, figures: Figures, last: dict[str, int], measure: bool,
                 seen: dict[str, set[int]], rng: random.Random) -> None:  # fmt: skip
        super().__init__("/api/screen/ws", url.netloc, token, rng)
        self._figures = figures
        self._last = last
        self._measure = measure
        self._seen = seen
        #: the first message came (the subscription is in force); fails with what kept the screen from it
        self.subscribed: asyncio.Future[None] = self.loop.create_future()

    def on_open(self) -> None:
        self.send_text(orjson.dumps({"type": "subscribe", "topics": ["units"]}))

    def on_text(self, payload: bytes) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(None)
        if not self._measure:
            if self._figures.measuring:  # a rate over the window: not what came while connecting or warming up
                self._figures.screen_bytes += len(payload)
            return
        data = orjson.loads(payload)
        if data["type"] in ("frame", "snapshot"):
            shown(data, self._last, self._seen, self._figures)

    def on_end(self) -> None:
        """The server ended it (a ``bye``, a restart): the screen stops reading, as it did before."""
        self.close()


async def run_screen(screen: Screen, url: SplitResult) -> None:
    try:
        await connect(screen, url.hostname or "localhost", url.port or 80)
        await screen.done
    except Exception as exc:
        if not screen.subscribed.done():
            screen.subscribed.set_exception(exc)
        raise
    if not screen.subscribed.done():
        screen.subscribed.set_exception(ConnectionError("the screen's socket ended before any message"))


def shown(data: dict[str, Any], last: dict[str, int], seen: dict[str, set[int]], figures: Figures) -> None:
    """Book what one frame or snapshot showed: each unit's newest seq, every fix time (the trail's too), and
    while measuring each position's latency. Runs for every position on four screens (40,000 a second at
    10,000 units), so it looks each thing up once."""
    arrived = now_ms()
    timed = figures.screen_ms if data["type"] == "frame" and figures.measuring else None
    for view in data["units"]:
        position = view["position"]
        if position is None:
            continue
        unit_id, fix_time_ms, seq = view["unit_id"], position["fix_time_ms"], position["seq"]
        if seq > last.get(unit_id, 0):
            last[unit_id] = seq
        if (fixes := seen.get(unit_id)) is None:
            seen[unit_id] = fixes = set()
        fixes.add(fix_time_ms)
        if timed is not None:
            timed.append(arrived - fix_time_ms)
            figures.screen_positions += 1
    for track in data.get("track", ()):
        seen.setdefault(track["unit_id"], set()).update(point[0] for point in track["points"])


CONNECT_WITHIN_S = 300.0  # every unit connected by then, or the window starts with those that are
SCREEN_GRACE_S = 10.0  # how long the screens may take to show the units' last positions once all are acked


async def caught_up(lasts: list[dict[str, int]], last_sent: dict[str, int], deadline: float) -> None:
    """Wait until the measuring screens have shown every unit's last position, or ``deadline``: a server on a
    busy core delivers seconds late, and a screen closed at a fixed time counted those positions as missing."""
    while time.monotonic() < deadline:
        if all(last.get(unit_id, 0) >= seq for last in lasts for unit_id, seq in last_sent.items()):
            return
        await asyncio.sleep(0.1)


async def main(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    figures = Figures()
    rng = random.Random(7)
    unit_url = urlsplit(args.url)
    if unit_url.scheme != "http":
        raise ValueError(f"units speak WebSocket over plain HTTP only (the load runs on this machine): {args.url}")
    # its own loop's lag, as the server's: a load generator that stalls reports its stall as our latency
    probe = asyncio.create_task(sample_forever(Path(args.lag_file))) if args.lag_file else None
    tokens = []
    async with aiohttp.ClientSession() as http:
        for _ in range(args.screens):
            async with http.post(f"{args.url}/api/auth/login", json=plan["screen_login"]) as response:
                tokens.append((await response.json())["token"])
    start = time.monotonic()
    stop = math.inf  # until every unit is connected: then the warm-up and the measuring window
    figures.screen_last = [{} for _ in tokens]
    figures.screen_seen = [{} for _ in tokens]
    screens = [Screen(unit_url, token, figures, figures.screen_last[i], i < args.measuring_screens,
                      figures.screen_seen[i], rng) for i, token in enumerate(tokens)]  # fmt: skip
    screen_tasks = [asyncio.create_task(run_screen(screen, unit_url)) for screen in screens]
    # the screens see every position only if they are subscribed before the first is sent
    await asyncio.wait_for(asyncio.gather(*(screen.subscribed for screen in screens)), 30)
    units = []
    secrets = list(plan["units"].items())[: args.units]
    figures.units_expected = len(secrets)
    connecting = asyncio.Semaphore(100)
    pacer = Pacer()
    unit_sockets = [Unit(unit_url, unit_id, secret, args.rate, stop, figures, rng, pacer)
                    for unit_id, secret in secrets]  # fmt: skip
    for i, unit in enumerate(unit_sockets):
        units.append(asyncio.create_task(run_unit(unit, unit_url, connecting)))
        if i % 100 == 99:  # open connections in steps, as units come on shift, not all in one instant
            await asyncio.sleep(args.ramp * 100 / len(secrets))
    # The window measures units at their rate, not a server still accepting the ramp's connections (each costs
    # a handshake and a few queries: at 10,000 units they outlasted a fixed ramp and filled the window).
    all_units = asyncio.ensure_future(figures.all_connected.wait())
    await asyncio.wait([all_units, *units], timeout=CONNECT_WITHIN_S, return_when=asyncio.FIRST_COMPLETED)
    all_units.cancel()
    connect_s = time.monotonic() - start
    stop = time.monotonic() + args.warmup + args.duration
    for unit in unit_sockets:
        unit.stop_at(stop)
    await asyncio.sleep(args.warmup)
    # every unit's socket, protocol and task lives to the end: out of the collector's way (a pass over them
    # stalled this loop for hundreds of milliseconds); freezing is O(1), nothing is traversed here
    gc.freeze()
    print(json.dumps({"event": "measuring"}), flush=True)
    figures.window_start_ms = now_ms()
    figures.measuring = True
    sent_before = figures.sent
    measured_from = time.monotonic()
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    figures.measuring = False
    print(json.dumps({"event": "measured"}), flush=True)
    window = time.monotonic() - measured_from
    sent_in_window = figures.sent - sent_before
    results = await asyncio.gather(*units, return_exceptions=True)
    pacer.close()
    await caught_up(figures.screen_last[: args.measuring_screens], figures.last_sent, time.monotonic() + SCREEN_GRACE_S)
    for screen in screens:
        screen.close()
    await asyncio.gather(*screen_tasks, return_exceptions=True)
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
        # seconds from the first unit's connect until all were connected (the ramp offers them at
        # --ramp's pace; a server slower to accept takes longer), and how many were
        "connect_s": round(connect_s, 1),
        "connected": figures.connected,
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
        "ack_ms": {
            "p50": percentile(figures.ack_ms, 50),
            "p99": percentile(figures.ack_ms, 99),
            "p99_by_slice": ack_p99_by_slice(figures),
            "slice_s": SLICE_MS / 1000,
        },
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
    result = uvloop.run(main(arguments, plan))  # the server's loop: the load costs its core as little
    print_line(result)  # a large line: see bench.harness.print_line
    sys.exit(0)
