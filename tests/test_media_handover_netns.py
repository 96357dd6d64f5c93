"""4G handover in a network namespace: the unit's address is taken away mid-stream and another given; the
reference unit restarts ICE (RFC 9725 §4.3.2) on its WHIP session. The session is the same (one
``publishing`` in the server's log, no reconnect), the viewer keeps decoding on its own connection, and the
recording, one session's segments, verifies against the audit chain with no pause longer than 1 s.

Server, unit and viewer run inside one namespace with a veth pair (addresses on loopback alone are not
gathered; /work/shared/notes/webrtc-interop.md). Needs root and iproute2; skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import StoreSettings
from media.evidence import SEGMENT_ACTION
from persistence.factory import build_store
from tests.standalone_server import CLI, prepare, run

ROOT = Path(__file__).resolve().parent.parent
UNIT = "HLJ0102-H1"
PASSWORD = "handover test operator"
SERVER, OLD, NEW = "10.77.0.1", "10.77.0.2", "10.77.0.3"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip is not installed (apt: iproute2)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cc-move-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                        ["ip", "addr", "add", f"{SERVER}/24", "dev", "v0"],
                        ["ip", "addr", "add", f"{OLD}/24", "dev", "v1"],
                        ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"]):  # fmt: skip
            run("ip", "netns", "exec", name, *command)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_unit_whose_address_changes_keeps_its_session_recording_and_viewers(netns: str, tmp_path: Path) -> None:
    env, secret = prepare(tmp_path, unit=UNIT, watcher_password=PASSWORD, CC_MEDIA__ICE_ADDRESSES=f'["{SERVER}"]',
                          CC_MEDIA__SEGMENT_SECONDS="2")  # fmt: skip
    inside = ["ip", "netns", "exec", netns]
    port = "8124"
    base = f"http://{SERVER}:{port}"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*inside, *CLI, "serve", "--host", SERVER, "--port", port], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    unit = None
    try:
        for _ in range(100):
            probe = subprocess.run([*inside, "python3", "-c", f"import urllib.request; urllib.request.urlopen('{base}"
                                    "/api/health')"], capture_output=True)  # fmt: skip
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        unit = subprocess.Popen([*inside, sys.executable, str(ROOT / "tests" / "netns_handover.py"), base, secret,
                                 "watcher", PASSWORD, UNIT, SERVER, OLD, NEW], cwd=ROOT, env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        assert unit.stdin is not None and unit.stdout is not None
        line = unit.stdout.readline()
        assert line.strip() == "move", line + unit.stdout.read()
        run(*inside, "ip", "addr", "del", f"{OLD}/24", "dev", "v1")  # the old network is gone …
        run(*inside, "ip", "addr", "add", f"{NEW}/24", "dev", "v1")  # … and the new one is up
        unit.stdin.write("moved\n")
        unit.stdin.flush()
        output = unit.communicate(timeout=60)[0]
        figures = json.loads(output.strip().splitlines()[-1])
        print("handover:", figures)
        assert figures["before"] > 30 and figures["after"] > 30, figures  # decoding on, on the same connection
        assert figures["reconnects"] == 0 and figures["connected"], figures
    finally:
        if unit is not None and unit.poll() is None:
            unit.kill()
        server.send_signal(2)
        server.wait(20)
        log.close()
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert server_log.count(f"unit {UNIT} publishing") == 1, server_log[-3000:]  # one session throughout
    assert "ICE restarted" in server_log, server_log[-3000:]
    verified = run(*CLI, "recording", "verify", "--unit", UNIT, env=env)
    assert "segments match the audit chain" in verified
    # The recording's gap across the move, as the segments report it (the longest pause between two recorded
    # video frames): the bound is 1 s.
    segments = asyncio.run(_segments(tmp_path / "app.db"))
    print("recording:", [(s["index"], s["longest_gap_ms"], s["gaps"]) for s in segments])
    assert len({s["session_id"] for s in segments}) == 1 and len(segments) >= 2, segments
    assert max(int(s["longest_gap_ms"]) for s in segments) <= 1000, segments


async def _segments(database: Path) -> list[dict[str, Any]]:
    store = build_store(StoreSettings(url=f"sqlite:///{database}"))
    await store.open()
    try:
        entries = await store.audit_entries(limit=1_000_000)
    finally:
        await store.close()
    return [e.details for e in entries if e.action == SEGMENT_ACTION and e.details.get("unit_id") == UNIT]
