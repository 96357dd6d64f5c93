"""Several command-centre processes on one PostgreSQL and one Redis, behind nginx: for tests and benchmarks.

The same nginx configuration as docker-compose (config/nginx/nginx.conf), rendered with this machine's
upstreams and ports. Each process gets its own node id, direct URL and data folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, Server, answers, free_port, loop_lag_env

NGINX = Path("/usr/sbin/nginx")
CLI = [sys.executable, "-m", "command_center"]


@dataclass(frozen=True)
class Tls:
    """The HTTPS entry point's certificate and key, and the plain-HTTP port that redirects to it."""

    certificate: Path
    key: Path
    http_port: int

    def client_context(self) -> ssl.SSLContext:
        """A client's TLS context trusting this certificate only (as a console that imported it does)."""
        return ssl.create_default_context(cafile=str(self.certificate))


def render_nginx(upstreams: list[str], port: int, workdir: Path, per_address: int | None = None,
                 tls: Tls | None = None, connections: int | None = None) -> str:  # fmt: skip
    """config/nginx/nginx.conf with these upstreams, this port and a pid file in ``workdir``; ``per_address``
    replaces its cap on connections from one client address (a benchmark's thousands of units all come from
    127.0.0.1, where in service they come from as many addresses); ``connections``, the connections (and open
    files) each worker may hold: a proxied unit takes two, and one worker may get most of them.

    With ``tls``, HTTPS on ``port`` with that certificate and the redirect on ``tls.http_port``, as in service;
    without, plain HTTP on ``port`` and no redirect (benchmarks measure the app, not the proxy's TLS)."""
    text = (ROOT / "config" / "nginx" / "nginx.conf").read_text()
    if per_address is not None:
        text = re.sub(r"limit_conn per_address \d+;", f"limit_conn per_address {per_address};", text)
    if connections is not None:
        text = re.sub(r"worker_connections \d+;", f"worker_connections {connections};", text)
        text = text.replace("worker_processes auto;", f"worker_processes auto;\nworker_rlimit_nofile {connections};")
    servers = "\n        ".join(f"server {u} max_fails=1 fail_timeout=3s;" for u in upstreams)
    text = re.sub(r"^\s*server .*# cc:upstreams.*\n", "", text, flags=re.M)
    text = text.replace("        keepalive 64;", f"        {servers}\n        keepalive 64;")
    text = re.sub(r"^pid .*# cc:pid$", f"pid {workdir / 'nginx.pid'};", text, flags=re.M)
    if tls is None:
        text = re.sub(r"^[^\n]*cc:redirect-begin\n.*?cc:redirect-end\n", "", text, flags=re.M | re.S)
        text = re.sub(r"^.*# cc:tls.*\n", "", text, flags=re.M)
        return re.sub(r"^\s*listen .*# cc:listen$", f"        listen 127.0.0.1:{port};", text, flags=re.M)
    text = re.sub(r"^\s*listen .*# cc:listen$", f"        listen 127.0.0.1:{port} ssl;", text, flags=re.M)
    text = re.sub(r"^\s*listen .*# cc:http$", f"        listen 127.0.0.1:{tls.http_port};", text, flags=re.M)
    text = re.sub(r"https://\$host\$request_uri;(\s*# cc:redirect)$", f"https://$host:{port}$request_uri;\\1",
                  text, flags=re.M)  # fmt: skip
    text = re.sub(r"^(\s*ssl_certificate) .*cc:certificate$", f"\\1 {tls.certificate};", text, flags=re.M)
    return re.sub(r"^(\s*ssl_certificate_key) .*cc:key$", f"\\1 {tls.key};", text, flags=re.M)


class Cluster:
    """``processes`` server processes sharing ``store_url`` and a Redis namespace of their own."""

    def __init__(self, workdir: Path, *, processes: int, store_url: str, redis_url: str = "redis://127.0.0.1:6379/0",
                 env: dict[str, str] | None = None, core: int | None = None,
                 per_address: int | None = None, tls: Tls | None = None,
                 sample_loop_lag: bool = False, connections: int | None = None) -> None:  # fmt: skip
        """``tls``: nginx serves HTTPS with that certificate (and redirects plain HTTP), as in service;
        ``per_address`` and ``connections``: nginx's caps (``render_nginx``)."""
        self.workdir = workdir
        self.tls = tls
        self.per_address = per_address
        self.connections = connections
        self.namespace = f"cluster-{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
        self.env |= {"CC_STORE__URL": store_url, "CC_BUS__URL": redis_url, "CC_BUS__NAMESPACE": self.namespace,
                     "CC_CONFIG": "", "CC_DATA_DIR": str(workdir / "shared"), "CC_AUTH__ARGON2_MEMORY_KIB": "8",
                     "CC_AUTH__ARGON2_TIME_COST": "1", "CC_AUTH__ARGON2_PARALLELISM": "1",
                     "CC_CLUSTER__LEASE_SECONDS": "2", "CC_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
                     "CC_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]'}  # fmt: skip
        self.env |= env or {}
        self.servers: list[Server] = []
        for index in range(processes):
            port = free_port()
            node = {"CC_CLUSTER__NODE_ID": f"node-{index + 1}", "CC_CLUSTER__NODE_URL": f"http://127.0.0.1:{port}",
                    "CC_DATA_DIR": str(workdir / f"node-{index + 1}")}  # fmt: skip
            if sample_loop_lag:
                node |= loop_lag_env(self.lag_file(index))
            self.servers.append(Server(self.env | node, port=port, core=core))
        self.proxy_port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.proxy_port}"  # the one entry point (nginx)
        self._nginx: subprocess.Popen[bytes] | None = None

    def lag_file(self, index: int) -> Path:
        """Where server ``index`` samples its event-loop lag (command_center/loop_lag.py)."""
        return self.workdir / f"node-{index + 1}-loop-lag.jsonl"

    # setting up ---------------------------------------------------------------------------------------
    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([*CLI, *args], cwd=ROOT, env=self.env, input=stdin, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def init(self) -> None:
        """Migrate, import the courts, create the first admin (once, before any process starts)."""
        self.cli("init")

    def add_user(self, username: str, role: str, password: str, court: str = "HLJ0102") -> None:
        self.cli("user", "add", "--username", username, "--display-name", username, "--role", role,
                 "--court", court, stdin=password + "\n")  # fmt: skip

    def add_device(self, unit_id: str, court: str = "HLJ0102", offline_after: float | None = None) -> str:
        extra = [] if offline_after is None else ["--offline-after", str(offline_after)]
        out = self.cli("device", "add", "--id", unit_id, "--name", unit_id, "--kind", "handheld", "--court", court,
                       *extra)  # fmt: skip
        return out.rsplit(" ", 1)[-1].strip()

    # running ------------------------------------------------------------------------------------------
    async def start(self, *, proxy: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for index, server in enumerate(self.servers):
            server.start(self.workdir / f"node-{index + 1}.log")
        await asyncio.gather(*(server.wait_healthy(60) for server in self.servers))
        if proxy:
            await self.start_proxy()

    def spawn_proxy(self) -> None:
        conf = self.workdir / "nginx.conf"
        conf.write_text(render_nginx([f"127.0.0.1:{s.port}" for s in self.servers], self.proxy_port, self.workdir,
                                     self.per_address, self.tls, self.connections))  # fmt: skip
        log = (self.workdir / "nginx.log").open("wb")
        self._nginx = subprocess.Popen([str(NGINX), "-p", str(self.workdir), "-c", str(conf), "-g", "daemon off;"],
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    async def start_proxy(self) -> None:
        self.spawn_proxy()
        trust = self.tls.client_context() if self.tls is not None else True
        if not await answers(f"{self.url}/api/health", 20, alive=lambda: self._nginx is not None
                             and self._nginx.poll() is None, tls=trust):  # fmt: skip
            raise RuntimeError(f"nginx did not come up: {(self.workdir / 'nginx.log').read_text()[-2000:]}")

    def kill(self, index: int) -> None:
        """SIGKILL one process: no goodbye, its leases lapse."""
        process = self.servers[index].process
        assert process is not None
        process.kill()
        process.wait()

    def stop(self) -> None:
        if self._nginx is not None and self._nginx.poll() is None:
            self._nginx.terminate()
            try:
                self._nginx.wait(10)
            except subprocess.TimeoutExpired:
                self._nginx.kill()
        for server in self.servers:
            server.stop()
