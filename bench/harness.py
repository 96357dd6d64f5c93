"""What every benchmark needs: percentiles, a server process to measure, and its CPU and memory."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import IO, Any

import aiohttp
import asyncpg

from command_center.loop_lag import FLUSH_EVERY
from command_center.loop_lag import INTERVAL as LAG_INTERVAL

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_ADMIN = os.environ.get("CC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def tune_gc() -> None:
    """The same collector settings as the server (command_center/cli.py): without them a load generator
    holding thousands of sockets stalls in collector passes and reports its own pauses as latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(25_000, 0, 6_000)  # command_center.cli.COLLECTOR_THRESHOLDS (not imported: the whole app)


def print_line(message: object) -> None:
    """``message`` as one JSON line on stdout, every byte of it however slowly the reader empties the pipe.

    A load generator's result line (every unit's last sequence number: 650 KB at 20,000 units) once came to
    its reader as the first 64 KiB and a newline. After ``uvloop.run`` the write to a full pipe returned
    after the pipe's 64 KiB, and ``print`` dropped the rest without an error; ``os.write`` reports how much
    went and is called again for the rest (tests/test_bench_result_line.py)."""
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    rest = memoryview(json.dumps(message).encode() + b"\n")
    while rest:
        try:
            rest = rest[os.write(fd, rest) :]
        except BlockingIOError:  # a non-blocking pipe that is full: wait until it takes more
            select.select([], [fd], [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessSample:
    cpu_seconds: float
    rss_mib: float
    at: float
    #: Seconds the process's main thread (the event loop) was runnable but waited for a core (schedstat):
    #: other processes on its core; a benchmark whose server waited much measured the machine, not the server.
    waited_seconds: float = 0.0


def sample(pid: int) -> ProcessSample:
    """CPU time (user+system) and resident memory of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    try:
        waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):  # a kernel without schedstats
        waited = 0.0
    return ProcessSample(cpu, rss_kib / 1024, time.monotonic(), waited)


def processes_named(name: str) -> list[int]:
    """Pids whose command name is ``name`` (e.g. every PostgreSQL backend)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """Total CPU time of processes that still exist."""
    total = 0.0
    for pid in pids:
        try:
            total += sample(pid).cpu_seconds
        except (OSError, StopIteration):
            continue
    return total


def wait_share(before: ProcessSample, after: ProcessSample) -> float:
    """Share of the time between two samples the process was ready to run but had no core."""
    return (after.waited_seconds - before.waited_seconds) / max(1e-9, after.at - before.at)


def cpu_share(before: ProcessSample, after: ProcessSample) -> float:
    """Share of one core used between two samples."""
    return (after.cpu_seconds - before.cpu_seconds) / max(1e-9, after.at - before.at)


class Server:
    """The command centre as a real process, pinned to one core when the machine has two or more."""

    def __init__(self, env: dict[str, str], *, port: int, core: int | None = 0) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = {**os.environ, **env}
        self._core = core
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, log: Path) -> None:
        command = [sys.executable, "-m", "command_center", "serve", "--port", str(self.port)]
        if self._core is not None and (os.cpu_count() or 1) > 1:
            command = ["taskset", "-c", str(self._core), *command]
        self._log = log.open("wb")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT)

    async def wait_healthy(self, within: float = 30) -> None:
        if not await answers(f"{self.url}/api/health", within, alive=self.running):
            raise RuntimeError(f"server did not become healthy; see {self._log.name if self._log else 'its log'}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._log is not None:
            self._log.close()


async def fresh_store_url(kind: str, workdir: Path, database: str) -> str:
    """A store URL for one benchmark run: a new SQLite file, or a PostgreSQL database dropped and created afresh.

    The database is ``database`` with this process's id appended: two benchmarks run at once on one machine
    (two people measuring) must not drop each other's database in the middle of a run. Those left by runs
    whose process has ended are dropped here."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    name = f"{database}_{os.getpid()}"
    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        for row in await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", database + "_"):
            pid = row["datname"].removeprefix(database + "_")
            if pid.isdigit() and _ended(int(pid)):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _ended(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (the benchmarks and the database share it)."""
    return not Path(f"/proc/{pid}").exists()


async def answers(
    url: str, within: float, alive: Callable[[], bool] = lambda: True, *, tls: SSLContext | bool = True
) -> bool:
    """Whether ``url`` answers 200 within ``within`` seconds (polled; gives up early once not ``alive``);
    ``tls`` as aiohttp's ``ssl`` takes it (a context trusting a test certificate)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, ssl=tls) as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline or not alive():
                return False
            await asyncio.sleep(0.2)


def loop_lag_env(path: Path) -> dict[str, str]:
    """The server setting that makes it sample its own event-loop lag into ``path`` (command_center/loop_lag.py)."""
    return {"CC_SERVER__LOOP_LAG_FILE": str(path)}


def loop_lag(path: Path, start: float, end: float) -> dict[str, Any]:
    """The server's event-loop lag p99 and max within [start, end] (time.monotonic), from its probe's file
    (command_center/loop_lag.py).

    A line written at ``at`` holds the second of samples before it, the last one taken at ``at``; each sample
    began ``INTERVAL`` plus its lag before it was taken, so walking back from ``at`` dates every sample, and
    only those taken in the window count. Counting whole lines took in what followed the window: at its end
    every unit of bench.telemetry closes its socket at once, a stall of about 200 ms that the window's own
    seconds did not have. Collector passes are not dated: those of every line reaching into the window count.
    """
    lags: list[float] = []
    pauses: list[list[float]] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if not start < entry["at"] <= end + FLUSH_EVERY + 1.0:
            continue
        pauses.extend(entry.get("gc_ms", []))
        taken = entry["at"]
        for lag in reversed(entry["lag_ms"]):
            if start < taken <= end:
                lags.append(lag)
            taken -= LAG_INTERVAL + lag / 1000
    return {"p99": percentile(lags, 99), "max": max(lags, default=float("nan")), "samples": len(lags),
            "gc_passes": len(pauses), "gc_max_ms": max((ms for _, ms in pauses), default=0.0),
            "gc_max_generation": max(pauses, key=lambda p: p[1], default=[-1, 0])[0],
            "gc_by_generation": {g: {"passes": sum(1 for q, _ in pauses if q == g),
                                     "max_ms": max((ms for q, ms in pauses if q == g), default=0.0),
                                     "total_ms": round(sum(ms for q, ms in pauses if q == g), 1)}
                                 for g in (0, 1, 2)}}  # fmt: skip


def lag_line(lag: dict[str, Any]) -> str:
    """One line of ``loop_lag``'s figures, as every benchmark prints them."""
    passes = (f"{lag['gc_passes']} collector passes of 1 ms or more, longest {lag['gc_max_ms']:.0f} ms "
              f"(generation {lag['gc_max_generation']})" if lag["gc_passes"]
              else "no collector pass of 1 ms or more")  # fmt: skip
    return f"lag p99 {lag['p99']:.0f} ms, max {lag['max']:.0f} ms ({lag['samples']} samples every 10 ms); {passes}"


def stalls(path: Path, start: float, end: float, *, top: int = 6) -> dict[str, Any]:
    """The server's loop stalls within [start, end] from its stall tracer's file (command_center/stall_trace.py):
    how many, the longest, their total, what that time went to (the loop thread's own CPU, its wait for a core,
    the other threads' CPU: see the tracer), how many had a collector pass in them, and the code sampled most
    often while the loop stood still (each stack cut to its innermost three frames, so one site adds up across
    callers)."""
    found = [s for s in (json.loads(line) for line in (path.read_text().splitlines() if path.exists() else []))
             if start <= s["at"] <= end]  # fmt: skip
    sites: dict[str, int] = {}
    for stall in found:
        for count, stack in stall["stacks"]:
            site = " <- ".join(stack.split(" <- ")[:3])
            sites[site] = sites.get(site, 0) + count
    spent = {
        key: round(sum(s.get(key, 0.0) for s in found)) for key in ("loop_cpu_ms", "loop_waited_ms", "others_cpu_ms")
    }
    return {"count": len(found), "max_ms": max((s["stall_ms"] for s in found), default=0.0),
            "total_ms": round(sum(s["stall_ms"] for s in found)), **spent,
            "with_gc": sum(1 for s in found if s["gc_ms"]),
            "sites": sorted(([n, site] for site, n in sites.items()), reverse=True)[:top]}  # fmt: skip
