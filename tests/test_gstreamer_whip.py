"""GStreamer's WHIP client (Debian's simple-whip-client, a peer nobody here wrote) streams a test pattern and
tone to our WHIP endpoint; an aiortc WHEP viewer receives the video; the session is recorded and verifies.

Everything runs inside a network namespace of the test's own (libnice, like Chromium, leaves loopback out of
its candidates; a veth interface that also carries 127.0.0.1 keeps every packet inside the namespace), as
/work/shared/notes/webrtc-interop.md describes. whip-client links libsoup 2 while libnice's UPnP library pulls
libsoup 3; a stub of that library (libnice takes "no UPnP" from it) is built with gcc for the test.
Needs root, iproute2, gcc and whip-client; skipped with the reason otherwise.
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
UNIT = "HLJ0102-G1"
PASSWORD = "gstreamer test operator"
STUB = """
unsigned long gupnp_simple_igd_get_type(void) { return 80; /* G_TYPE_OBJECT */ }
void *gupnp_simple_igd_thread_new(void) { return 0; }
void gupnp_simple_igd_add_port(void) {}
void gupnp_simple_igd_remove_port(void) {}
void gupnp_simple_igd_remove_port_local(void) {}
"""
VIDEO = ("videotestsrc is-live=true pattern=ball ! videoconvert ! queue ! vp8enc deadline=1 ! rtpvp8pay pt=96 "
         "ssrc=2 ! queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96")  # fmt: skip
AUDIO = ("audiotestsrc is-live=true wave=red-noise ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay "
         "pt=100 ssrc=1 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=100")  # fmt: skip


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "gcc", "whip-client"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt: iproute2, gcc, simple-whip-client)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cc-whip-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        for command in (["ip", "link", "set", "lo", "up"], ["ip", "link", "add", "v0", "type", "veth", "peer", "name",
                        "v1"], ["ip", "addr", "add", "127.0.0.1/32", "dev", "v0"], ["ip", "link", "set", "v0", "up"],
                        ["ip", "link", "set", "v1", "up"]):  # fmt: skip
            run("ip", "netns", "exec", name, *command)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize("trickle", [False, True], ids=["one-offer", "trickle"])
def test_gstreamer_whip_client_streams_and_a_viewer_receives_it(netns: str, tmp_path: Path, trickle: bool) -> None:
    """With ``trickle`` whip-client sends its candidates in PATCH requests (RFC 9725 §4.3.1) after the offer."""
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "stub.c").write_text(STUB)
    run("gcc", "-shared", "-fPIC", "-o", str(stub_dir / "libgupnp-igd-1.0.so.4"), str(stub_dir / "stub.c"))
    env, secret = prepare(tmp_path, unit=UNIT, watcher_password=PASSWORD, CC_MEDIA__ICE_ADDRESSES='["127.0.0.1"]',
                          CC_MEDIA__SEGMENT_SECONDS="2",  # the PATCHes are read from the access log below
                          CC_OBSERVABILITY__ACCESS_LOG="all", CC_OBSERVABILITY__LOG_FORMAT="text")  # fmt: skip
    cli = CLI
    port = "8123"
    inside = ["ip", "netns", "exec", netns]
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*inside, *cli, "serve", "--port", port], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    client = None
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # healthy inside the namespace
            probe = subprocess.run([*inside, "python3", "-c", f"import urllib.request; urllib.request.urlopen('{base}"
                                    "/api/health')"], capture_output=True)  # fmt: skip
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        client_env = env | {"LD_LIBRARY_PATH": str(stub_dir)}
        client = subprocess.Popen([*inside, "timeout", "-s", "INT", "12", "whip-client", "-u", f"{base}/api/whip",
                                   "-t", secret, *([] if trickle else ["-n"]), "-V", VIDEO, "-A", AUDIO],
                                  env=client_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        seen = json.loads(run(*inside, sys.executable, str(ROOT / "tests" / "netns_viewer.py"), base, "watcher",
                               PASSWORD, UNIT, env=env).strip().splitlines()[-1])  # fmt: skip
        assert seen | {"seconds": 0} == {
            "frames": 30,
            "width": 320,
            "height": 240,
            "seconds": 0,
        }  # videotestsrc's picture, forwarded as sent
        output = client.communicate(timeout=30)[0].decode(errors="replace")
        assert "Bye!" in output, output  # it ended with DELETE on the session (SIGINT)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        server.send_signal(2)
        server.wait(20)
        log.close()
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert f"unit {UNIT} publishing" in server_log and "ended by the unit" in server_log, server_log[-2000:]
    patches = [line for line in server_log.splitlines() if '"PATCH /api/whip/' in line]
    assert (bool(patches) and all('HTTP/1.1" 204 ' in line for line in patches)) == trickle, patches
    verified = run(*cli, "recording", "verify", "--unit", UNIT, env=env)
    assert "segments match the audit chain" in verified
