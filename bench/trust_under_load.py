"""Trust under load: a real user still logs in during a login flood, and health answers while thousands of
half-sent requests hold sockets open (issue 12's targets: a real login within 2 s, health within 1 s).

    python -m bench.trust_under_load [--flood 600] [--slow 4000]

The command centre runs as a real process (`serve`, SQLite, the shipped Argon2 cost, pinned to core 0);
this process (core 1) is every client. Loopback addresses stand for client addresses (127.0.0.0/8 only).

- baseline: five real logins with nothing else going on (the cost of one Argon2 check), then
- flood from one address: ``--flood`` logins for made-up usernames from 127.0.0.1, 200 in flight, while the
  real user logs in five times from 127.0.0.2 (0.4 s apart);
- flood from 200 addresses: the same spread over 127.0.1.1-200;
  printed: the real user's login latency (each, and the worst) and status, and what the flood got (status
  counts: 401 checked, 429 refused per address, 503 refused by the full verifier);
- slow heads from one address, then from 16: ``--slow`` sockets that send a request line and then one
  header byte a second; meanwhile ``/api/health`` from 127.0.0.1 every 0.1 s. Printed: health latency
  p50/p99/max beside the baseline measured before, and how many sockets the server admitted, refused (503)
  and cut (408) within ``server.header_timeout_seconds`` + 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.harness import ROOT, Server, free_port, percentile, tune_gc

REAL_LOGINS = 5


def _connector(address: str) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(local_addr=(address, 0), limit=0, force_close=True)


async def _login(http: aiohttp.ClientSession, url: str, username: str, password: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        async with http.post(f"{url}/api/auth/login", json={"username": username, "password": password}) as answer:
            await answer.read()
            return answer.status, time.perf_counter() - started
    except aiohttp.ClientError:
        return 0, time.perf_counter() - started


async def _real_user(url: str, password: str, spacing: float) -> list[tuple[int, float]]:
    async with aiohttp.ClientSession(connector=_connector("127.0.0.2")) as http:
        results = []
        for _ in range(REAL_LOGINS):
            results.append(await _login(http, url, "admin", password))
            await asyncio.sleep(spacing)
        return results


async def _flood(url: str, total: int, addresses: list[str], in_flight: int = 200) -> Counter[int]:
    sessions = [aiohttp.ClientSession(connector=_connector(a)) for a in addresses]
    gate = asyncio.Semaphore(in_flight)
    outcomes: Counter[int] = Counter()

    async def one(i: int) -> None:
        async with gate:
            status, _ = await _login(sessions[i % len(sessions)], url, f"nobody{i}", "wrong horse battery 9")
            outcomes[status] += 1

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for session in sessions:
            await session.close()
    return outcomes


async def _health_probe(url: str, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=_connector("127.0.0.1"), timeout=aiohttp.ClientTimeout(total=10)) as h:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with h.get(f"{url}/api/health") as answer:
                    await answer.read()
                latencies.append(time.perf_counter() - started)
            except (aiohttp.ClientError, TimeoutError):
                latencies.append(float("inf"))
            await asyncio.sleep(0.1)
    return latencies


async def _slow_socket(port: int, address: str, hold: float, outcomes: Counter[str]) -> None:
    """A request head sent one byte a second; counts what the server did with it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    except OSError:
        outcomes["connect failed"] += 1
        return
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            try:
                head = await asyncio.wait_for(reader.read(64), timeout=1.0)
            except TimeoutError:
                writer.write(b"a")
                continue
            if not head:
                outcomes["closed"] += 1
            elif b" 503 " in head[:16]:
                outcomes["refused 503"] += 1
            elif b" 408 " in head[:16]:
                outcomes["cut 408"] += 1
            else:
                outcomes[head[:12].decode(errors="replace")] += 1
            return
        outcomes["still open"] += 1
    except (ConnectionError, OSError):
        outcomes["reset"] += 1
    finally:
        writer.close()


async def _slow_heads(
    url: str, port: int, count: int, addresses: list[str], hold: float
) -> tuple[list[float], Counter[str]]:
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()
    probe = asyncio.create_task(_health_probe(url, stop))
    sockets = []
    for i in range(count):  # opened over about a second, as a flood would
        sockets.append(asyncio.create_task(_slow_socket(port, addresses[i % len(addresses)], hold, outcomes)))
        if i % 400 == 399:
            await asyncio.sleep(0.1)
    await asyncio.gather(*sockets)
    stop.set()
    return await probe, outcomes


def _ms(value: float) -> str:
    return "∞" if value == float("inf") else f"{value * 1000:.0f} ms"


def _summary(latencies: list[float]) -> str:
    return f"p50 {_ms(percentile(latencies, 50))}, p99 {_ms(percentile(latencies, 99))}, max {_ms(max(latencies))}"


async def main(flood: int, slow: int) -> None:
    tune_gc()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as folder:
        workdir = Path(folder)
        env = {"CC_DATA_DIR": str(workdir), "CC_STORE__URL": f"sqlite:///{workdir / 'bench.db'}",
               "CC_LOG_LEVEL": "WARNING"}  # fmt: skip
        init = [sys.executable, "-m", "command_center", "init"]
        await asyncio.to_thread(subprocess.run, init, cwd=ROOT, env={**os.environ, **env}, check=True,
                                capture_output=True)  # fmt: skip
        password = (workdir / "first-admin-password").read_text().strip()
        port = free_port()
        server = Server(env, port=port)
        server.start(workdir / "server.log")
        try:
            await server.wait_healthy()
            if (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(0, {1})
            print(f"server pid {server.pid} on core 0; clients on core 1; load before: {os.getloadavg()[0]:.2f}")

            baseline = await _real_user(server.url, password, 0.0)
            print(f"baseline real login (no load): {', '.join(_ms(t) for _, t in baseline)}"
                  f" (statuses {[s for s, _ in baseline]})")  # fmt: skip
            for label, addresses in (("one address", ["127.0.0.1"]),
                                     ("200 addresses", [f"127.0.1.{i}" for i in range(1, 201)])):  # fmt: skip
                started = time.perf_counter()
                flooding = asyncio.create_task(_flood(server.url, flood, addresses))
                await asyncio.sleep(0.2)
                real = await _real_user(server.url, password, 0.4)
                got = await flooding
                took = time.perf_counter() - started
                print(f"flood of {flood} unknown-user logins from {label} ({took:.1f} s):"
                      f" real user {', '.join(_ms(t) for _, t in real)}, worst {_ms(max(t for _, t in real))},"
                      f" statuses {[s for s, _ in real]}; flood got {dict(sorted(got.items()))}")  # fmt: skip
                await asyncio.sleep(1)

            stop = asyncio.Event()
            quiet = asyncio.create_task(_health_probe(server.url, stop))
            await asyncio.sleep(2)
            stop.set()
            print(f"baseline health (no load): {_summary(await quiet)}")
            for label, addresses in (("one address", ["127.0.0.3"]),
                                     ("16 addresses", [f"127.0.2.{i}" for i in range(1, 17)])):  # fmt: skip
                latencies, outcomes = await _slow_heads(server.url, port, slow, addresses, hold=20.0)
                print(f"{slow} slow request heads from {label}: health {_summary(latencies)}"
                      f" ({len(latencies)} probes); sockets {dict(sorted(outcomes.items()))}")  # fmt: skip
                await asyncio.sleep(1)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=600, help="made-up-user logins per flood")
    parser.add_argument("--slow", type=int, default=4000, help="slow request heads per round")
    options = parser.parse_args()
    asyncio.run(main(options.flood, options.slow))
