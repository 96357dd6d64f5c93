"""The GB/T 28181 benchmark's plumbing at tiny scale: ``python -m bench.gb28181`` starts its servers, devices,
screens and viewers, prints every figure the README quotes, and exits 0 only when nothing was lost (the
merger re-runs it at 2,000 devices; a bench that silently broke, e.g. refused past 8 viewers, went unseen)."""

from __future__ import annotations

import re
import subprocess
import sys

from bench.harness import ROOT


def test_the_benchmark_runs_end_to_end_and_prints_its_figures() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.gb28181", "--devices", "5", "--streams", "1", "--seconds", "3", "--screens", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "registered        5/5 devices" in out
    # positions sent == stored == on each screen, for the GB devices and for as many WebSocket units
    counts = re.findall(r"positions +sent (\d+), stored (\d+), on each screen (\d+), (\d+)", out)
    assert len(counts) == 2, out
    for sent, stored, *screens in counts:
        assert int(sent) > 0 and {stored, *screens} == {sent}, out
    assert re.search(r"device -> screen  p50 \d+ ms, p99 \d+ ms, max \d+ ms", out), out
    assert re.search(r"unit -> screen    p50 \d+ ms, p99 \d+ ms", out), out
    assert re.search(r"position latency  GB devices at 5: p99 \d+ ms vs WebSocket units at 5: p99 \d+ ms", out)
    assert out.count("event loop        lag p99") == 2 and "(with the streams)" in out
    assert re.search(r"added forwarding latency p50 \d+ ms, p99 \d+ ms", out), out
    assert re.search(r"CPU per stream    GB/T 28181 PS -?\d+\.\d% vs WHIP \d+\.\d%", out), out
