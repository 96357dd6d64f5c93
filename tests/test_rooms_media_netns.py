"""A participant on a bad link does not degrade the others in a consultation room (issue 18).

Two centres confer on the server's side of the link (the clean pair) while a third joins through the
field-conditions test's "wan" namespace (tests/netem_bridge.py: 300 ms round trip, 10 % loss each way,
2 Mbit/s). Each counts the video frames it decodes from every other participant over the same number of
seconds, first with the clean pair alone, then with the third publishing and viewing through the bad link.
Expected: what the clean pair decode of each other stays at least 80 % of what they decoded alone (frame
counts compared within one run, not timings against a figure), and the third does take part (it decodes
frames from both).

Needs root, iproute2 and ethtool (the link fixture's); skipped with the reason otherwise. Marked ``field``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.standalone_server import CLI, prepare, run
from tests.test_field_conditions import SERVER, UNIT_ADDRESS, Link, _missing, link  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bad link room test"
WINDOW_S = 8.0
PORT = "8126"

pytestmark = [pytest.mark.field, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


class Centre:
    """One netns_room_peer.py process, talked to by lines."""

    def __init__(self, namespace: str, base: str, username: str, address: str, room: str, env: dict[str, str],
                 log: Path) -> None:  # fmt: skip
        self.name = username
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(ROOT / "tests" / "netns_room_peer.py"), base,
             username, PASSWORD, address, *room.split(" ")],
            cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"),
        )  # fmt: skip
        self.viewing: list[str] = []

    def read(self, key: str) -> Any:
        """The next line that carries ``key`` (``viewing`` lines on the way are remembered)."""
        assert self.process.stdout is not None
        while line := self.process.stdout.readline():
            message = json.loads(line)
            if "viewing" in message:
                self.viewing = message["viewing"]
            if key in message:
                return message[key]
        raise AssertionError(f"{self.name} ended before saying {key!r} (exit {self.process.wait(10)})")

    def views(self, *names: str) -> None:
        while not set(names) <= set(self.viewing):
            self.read("viewing")

    def ask(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.ask("quit")
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def count(*centres: Centre) -> dict[str, dict[str, int]]:
    for centre in centres:
        centre.ask(f"count {WINDOW_S}")
    return {centre.name: centre.read("counts") for centre in centres}


def test_a_participant_on_a_bad_link_does_not_degrade_the_others(link: Link, tmp_path: Path) -> None:  # noqa: F811
    env, _ = prepare(tmp_path, unit="HLJ0102-R1", watcher_password=PASSWORD, CC_MEDIA__ICE_ADDRESSES=f'["{SERVER}"]')
    for username in ("clean", "lossy"):
        run(*CLI, "user", "add", "--username", username, "--display-name", username, "--role", "operator",
            "--court", "HLJ01", stdin=PASSWORD + "\n", env=env)  # fmt: skip
    base = f"http://{SERVER}:{PORT}"
    in_server = ["ip", "netns", "exec", link.server_ns]
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*in_server, *CLI, "serve", "--host", SERVER, "--port", PORT], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    centres: list[Centre] = []
    try:
        for _ in range(150):
            probe = subprocess.run([*in_server, sys.executable, "-c", "import urllib.request; urllib.request"
                                    f".urlopen('{base}/api/health')"], capture_output=True)  # fmt: skip
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        host = Centre(link.server_ns, base, "watcher", SERVER, "open clean,lossy", env, tmp_path / "watcher.log")
        centres.append(host)
        room = host.read("room")
        clean = Centre(link.server_ns, base, "clean", SERVER, room, env, tmp_path / "clean.log")
        centres.append(clean)
        host.views("clean")
        clean.views("watcher")
        alone = count(host, clean)

        lossy = Centre(link.unit_ns, base, "lossy", UNIT_ADDRESS, room, env, tmp_path / "lossy.log")
        centres.append(lossy)
        lossy.views("watcher", "clean")
        host.views("clean", "lossy")
        clean.views("watcher", "lossy")
        together = count(host, clean, lossy)
        print("alone:", alone, "with the bad link:", together)

        assert alone["watcher"]["clean"] > 0 and alone["clean"]["watcher"] > 0, alone  # the clean pair confers
        assert together["watcher"]["clean"] >= 0.8 * alone["watcher"]["clean"], (alone, together)
        assert together["clean"]["watcher"] >= 0.8 * alone["clean"]["watcher"], (alone, together)
        assert together["lossy"]["watcher"] > 0 and together["lossy"]["clean"] > 0, together  # it takes part
    finally:
        for centre in centres:
            centre.stop()
        server.send_signal(2)
        server.wait(30)
        log.close()
