"""A benchmark's load generator hands its result to its caller as one JSON line, whole, however large."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from bench.harness import ROOT

# What bench/telemetry_load.py does: its units and screens on uvloop, then the result line (every unit's last
# sequence number: 650 KB at 20,000 units) to a caller that is still busy and has not read the pipe yet.
CHILD = """
import asyncio, uvloop
from bench.harness import print_line
uvloop.run(asyncio.sleep(0.01))
print_line({"last_sent": {f"unit-{i:05d}": i for i in range(20_000)}, "filler": "x" * 300_000})
"""


async def test_a_result_line_larger_than_the_pipe_arrives_whole_at_a_slow_reader() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, cwd=ROOT, stdout=subprocess.PIPE, limit=64 * 1024 * 1024
    )
    assert child.stdout is not None
    # the caller busy elsewhere (a blocking sleep, on purpose): the child's write finds the pipe full
    time.sleep(1.0)  # noqa: ASYNC251
    lines = [line async for line in child.stdout]
    assert await child.wait() == 0
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert len(result["last_sent"]) == 20_000 and result["last_sent"]["unit-19999"] == 19_999
    assert len(result["filler"]) == 300_000
