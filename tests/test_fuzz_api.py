"""Every HTTP endpoint, fuzzed from the app's own OpenAPI document (schemathesis): whatever the path
parameters, query strings and bodies, the server answers with a 2xx, 3xx or a 4xx error body, never a 5xx.

The server runs as a real process (SQLite, the demo data) and is called as the administrator, who may use
every route; routes for devices refuse the administrator with 403, which is an answer too. The
case-management system's route is called with a system client's secret, so its bodies are exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from bench.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
FAST_ARGON2 = {"CC_AUTH__ARGON2_MEMORY_KIB": "8", "CC_AUTH__ARGON2_TIME_COST": "1", "CC_AUTH__ARGON2_PARALLELISM": "1"}


def _request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        import json

        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env |= {"CC_DATA_DIR": str(data), "CC_STORE__URL": f"sqlite:///{data / 'app.db'}", **FAST_ARGON2,
            "CC_MEDIA__RECORD_SESSIONS": "false"}  # fmt: skip
    cli = [sys.executable, "-m", "command_center"]
    subprocess.run([*cli, "init"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    subprocess.run([*cli, "demo"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    client = subprocess.run([*cli, "system-client", "add", "--name", "fuzz", "--court", "HLJ0102"], env=env,
                            cwd=ROOT, check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    system = {"Authorization": f"Bearer {client.stdout.rsplit(': ', 1)[1].strip()}"}
    port = free_port()
    log = (data / "server.log").open("wb")
    process = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                _request(f"{base}/api/health")
                break
            except OSError:
                time.sleep(0.2)
        password = (data / "first-admin-password").read_text().strip()
        login = _request(f"{base}/api/auth/login", b'{"username": "admin", "password": "%s"}' % password.encode())
        yield base, {"Authorization": f"Bearer {login['token']}"}, system
    finally:
        process.send_signal(2)
        process.wait(20)
        log.close()


SKIPPED = {"/api/auth/logout", "/api/sessions/{session_id}"}  # would end the session the other requests use
EXAMPLES = 25


def test_no_endpoint_answers_with_a_server_error(server: tuple[str, dict[str, str], dict[str, str]]) -> None:
    base, admin, system = server
    document = _request(f"{base}/api/openapi.json", headers=admin)
    document["servers"] = [{"url": base}]
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"the OpenAPI document has an operation schemathesis cannot read: {result}")
            continue
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        operations += 1
        _probe(operation, base, system if operation.path.startswith("/api/integration/") else admin, failures)
    assert operations >= 60  # every route of the registry was reached
    assert failures == [], "\n".join(failures[:20])


def _probe(operation: Any, base: str, auth: dict[str, str], failures: list[str]) -> None:
    """Call one operation with generated inputs as ``auth``; every 5xx is a failure."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def probe(case: Any) -> None:
        response = case.call(base_url=base, headers=auth, timeout=15)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

    probe()
