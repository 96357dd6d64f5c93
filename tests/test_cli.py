"""The command line as an administrator uses it, in real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from config.settings import StoreSettings
from persistence.factory import build_store

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env.update(
        CC_DATA_DIR=str(tmp_path),
        CC_STORE__URL=f"sqlite:///{tmp_path / 'cli.db'}",
        CC_AUTH__ARGON2_MEMORY_KIB="8",
        CC_AUTH__ARGON2_TIME_COST="1",
        CC_AUTH__ARGON2_PARALLELISM="1",
    )
    return env


def _cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "command_center", *args],
        cwd=ROOT,
        env=_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _cluster_secrets(tmp_path: Path) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "cli.db")) as db:
        return db.execute("SELECT secret FROM cluster_secret").fetchall()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = _cli(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "init", "court", "user", "device"):
        assert command in result.stdout


def test_init_user_and_device_commands(tmp_path: Path) -> None:
    init = _cli(tmp_path, "init")
    assert init.returncode == 0, init.stderr
    assert "courts: 8 imported" in init.stdout and "first admin login: username 'admin'" in init.stdout
    secret_file = tmp_path / "first-admin-password"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    made = _cluster_secrets(tmp_path)
    assert len(made) == 1 and len(made[0][0]) == 64  # the secret forwarded requests are signed with
    again = _cli(tmp_path, "init")  # idempotent: no second admin, same login shown
    assert secret_file.read_text().strip() in again.stdout
    assert _cluster_secrets(tmp_path) == made

    assert _cli(tmp_path, "migrate").stdout.strip() == "applied: nothing (up to date)"

    added = _cli(
        tmp_path,
        "user",
        "add",
        "--username",
        "sun",
        "--display-name",
        "孙法官",
        "--role",
        "judge",
        "--court",
        "HLJ0102",
        stdin="a good long password\n",
    )
    assert added.returncode == 0, added.stderr
    short = _cli(
        tmp_path,
        "user",
        "add",
        "--username",
        "qian",
        "--display-name",
        "钱",
        "--role",
        "judge",
        "--court",
        "HLJ0102",
        stdin="short\n",
    )
    assert short.returncode == 1 and "at least 10" in short.stderr
    nowhere = _cli(
        tmp_path,
        "user",
        "add",
        "--username",
        "li",
        "--display-name",
        "李",
        "--role",
        "judge",
        "--court",
        "NOPE",
        stdin="a good long password\n",
    )
    assert nowhere.returncode == 1 and "court NOPE does not exist" in nowhere.stderr

    device = _cli(
        tmp_path,
        "device",
        "add",
        "--id",
        "HLJ0102-U02",
        "--name",
        "道里二号",
        "--kind",
        "handheld",
        "--court",
        "HLJ0102",
    )
    assert device.returncode == 0 and "cc_d_" in device.stdout
    duplicate = _cli(
        tmp_path,
        "device",
        "add",
        "--id",
        "HLJ0102-U02",
        "--name",
        "x",
        "--kind",
        "handheld",
        "--court",
        "HLJ0102",
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert _cli(tmp_path, "device", "revoke", "--id", "HLJ0102-U02").returncode == 0


def test_serve_answers_health_and_login_then_shuts_down_cleanly(tmp_path: Path) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    password = (tmp_path / "first-admin-password").read_text().strip()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "command_center", "serve", "--port", str(port)],
        cwd=ROOT,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as response:
                    health = json.load(response)
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail("server did not answer /api/health within 20 s")
                time.sleep(0.2)
        assert health["status"] == "ok"
        request = urllib.request.Request(
            f"{base}/api/auth/login",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["user"]["role"] == "admin"
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)
    assert server.returncode == 0, output
    assert "Traceback" not in output


def test_demo_creates_a_judge_and_a_case_once(tmp_path: Path) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    first = _cli(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert "demo judge login: username 'demo-judge'" in first.stdout
    password = (tmp_path / "demo-judge-password").read_text().strip()
    assert password in first.stdout and (tmp_path / "demo-judge-password").stat().st_mode & 0o077 == 0
    secret = (tmp_path / "demo-unit-secret").read_text().strip()  # /field needs a device secret: the demo gives one
    assert f"demo field unit HLJ0102-F01: open /field on a phone and enter the device secret '{secret}'" in first.stdout
    assert (tmp_path / "demo-unit-secret").stat().st_mode & 0o077 == 0
    again = _cli(tmp_path, "demo")  # idempotent: the same judge, the same case, the same login shown
    assert again.returncode == 0 and password in again.stdout and secret in again.stdout

    async def cases() -> list[tuple[str, list[str]]]:
        store = build_store(StoreSettings(url=f"sqlite:///{tmp_path / 'cli.db'}"))
        await store.open()
        try:
            return [(c.case_number, [p.kind.value for p in c.parties]) for c in await store.list_cases()]
        finally:
            await store.close()

    assert asyncio.run(cases()) == [("(2026)黑0102执1号", ["person", "organisation"])]
