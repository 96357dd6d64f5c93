"""A Redis and a PostgreSQL of one's own, to kill for real (-9) and start again: for the fault tests and the
fault drill (the machine's own servers are shared by every test and are never touched)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bench.harness import free_port

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/nonexistent"))


class OwnRedis:
    """redis-server on a free port, keeping nothing on disk (a restart comes back empty)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save",
                                         "", "--appendonly", "no", "--dir", str(self.folder)], stdout=log,
                                        stderr=log)  # fmt: skip

    async def start(self) -> None:
        self.spawn()
        try:
            await asyncio.wait_for(self._ping_until_pong(), 10)
        except TimeoutError:
            raise RuntimeError(f"redis on {self.port} did not start: {self._log_tail()}") from None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    async def _ping_until_pong(self) -> None:
        while True:
            probe = await asyncio.create_subprocess_exec("redis-cli", "-p", str(self.port), "ping",
                                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
            out, _ = await probe.communicate()
            if out.strip() == b"PONG":
                return
            await asyncio.sleep(0.1)

    def _log_tail(self) -> str:
        return (self.folder / "redis.log").read_text()[-1000:]


class OwnPostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary folder, run as the postgres user; needs root)."""

    available = os.geteuid() == 0 and (PG_BIN / "initdb").exists()

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cc-own-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None

    async def init(self) -> None:
        await asyncio.to_thread(subprocess.run, ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D",
                                str(self.data), "--auth=trust", "-U", "postgres"], check=True, capture_output=True,
                                timeout=60)  # fmt: skip

    def spawn(self) -> None:
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D",
                                         str(self.data), "-p", str(self.port), "-k", str(self.folder), "-c",
                                         "listen_addresses=127.0.0.1", "-c", "fsync=off"], stdout=log, stderr=log,
                                        start_new_session=True)  # fmt: skip

    async def start(self) -> None:
        self.spawn()
        for _ in range(100):
            probe = await asyncio.create_subprocess_exec(str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                                                         str(self.port))  # fmt: skip
            if await probe.wait() == 0:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"postgres did not start: {(self.folder / 'postgres.log').read_text()[-1500:]}")

    async def crash(self) -> None:
        """SIGKILL the postmaster (its backends notice and exit) and wait until it and its port are gone."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)
        await asyncio.sleep(0.5)  # the backends see the postmaster gone and leave its shared memory

    async def remove(self) -> None:
        await self.crash()
        shutil.rmtree(self.folder, ignore_errors=True)
