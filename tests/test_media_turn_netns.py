"""A unit on a network that blocks UDP (an nftables rule in its network namespace drops every UDP datagram
to or from its address) streams through coturn over TCP: its first WHIP answer names the centre's TURN server
with a time-limited credential in a ``Link`` header (RFC 9725 §4.6); that attempt cannot connect, the
reference unit tries again with the TURN server, and a viewer decodes it.

Server, coturn, unit and viewer run inside one namespace with a veth pair. Needs root, iproute2, nftables and
coturn (scripts/setup.sh); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standalone_server import CLI, prepare, run

ROOT = Path(__file__).resolve().parent.parent
UNIT = "HLJ0102-T1"
PASSWORD = "turn test operator"
SERVER, UNIT_ADDRESS = "10.78.0.1", "10.78.0.2"
SECRET = "coturn-secret-of-the-namespace-test"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "turnserver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt: iproute2, nftables, coturn)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cc-turn-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                        ["ip", "addr", "add", f"{SERVER}/24", "dev", "v0"],
                        ["ip", "addr", "add", f"{UNIT_ADDRESS}/24", "dev", "v1"],
                        ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
                        ["nft", "add", "table", "inet", "unit"],
                        ["nft", "add", "chain", "inet", "unit", "out", "{ type filter hook output priority 0; }"],
                        ["nft", "add", "rule", "inet", "unit", "out", "ip", "saddr", UNIT_ADDRESS, "meta", "l4proto",
                         "udp", "drop"],
                        ["nft", "add", "rule", "inet", "unit", "out", "ip", "daddr", UNIT_ADDRESS, "meta", "l4proto",
                         "udp", "drop"]):  # fmt: skip
            run("ip", "netns", "exec", name, *command)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_unit_whose_network_blocks_udp_streams_through_turn(netns: str, tmp_path: Path) -> None:
    env, secret = prepare(tmp_path, unit=UNIT, watcher_password=PASSWORD, CC_MEDIA__ICE_ADDRESSES=f'["{SERVER}"]',
                          CC_MEDIA__ICE_SERVERS=f'["turn:{SERVER}:3478?transport=tcp"]', CC_MEDIA__TURN_SECRET=SECRET,
                          CC_MEDIA__ICE_TIMEOUT_SECONDS="8")  # fmt: skip
    inside = ["ip", "netns", "exec", netns]
    port = "8125"
    base = f"http://{SERVER}:{port}"
    turn = subprocess.Popen([*inside, "turnserver", f"--listening-ip={SERVER}", "--listening-port=3478",
                             f"--relay-ip={SERVER}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
                             "--realm=court.example", "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log",
                             f"--log-file={tmp_path / 'turn.log'}", "--simple-log", f"--userdb={tmp_path / 'turndb'}",
                             f"--pidfile={tmp_path / 'turn.pid'}", "--min-port=49152", "--max-port=49999",
                             "--fingerprint"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
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
        unit = subprocess.Popen([*inside, sys.executable, str(ROOT / "tests" / "netns_unit.py"), base, secret,
                                 UNIT_ADDRESS, "40", "15"], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)  # fmt: skip
        server_log = tmp_path / "server.log"
        for _ in range(300):  # the second attempt, with the TURN server its first answer named
            if server_log.read_text(errors="replace").count(f"unit {UNIT} publishing") >= 2:
                break
            time.sleep(0.1)
        seen = json.loads(run(*inside, sys.executable, str(ROOT / "tests" / "netns_viewer.py"), base, "watcher",
                               PASSWORD, UNIT, SERVER, env=env).strip().splitlines()[-1])  # fmt: skip
        assert seen["frames"] == 30 and (seen["width"], seen["height"]) == (640, 480), seen
        figures = json.loads(unit.communicate(timeout=90)[0].strip().splitlines()[-1])
        # the first try (no TURN server known yet) could not connect; every position got through afterwards
        assert figures["reconnects"] >= 1 and figures["unacknowledged"] == 0, figures
    finally:
        if unit is not None and unit.poll() is None:
            unit.kill()
        server.send_signal(2)
        server.wait(20)
        log.close()
        turn.terminate()
        turn.wait(5)
