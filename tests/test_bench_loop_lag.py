"""The benchmarks' loop-lag figures count the samples taken in their window and none taken after it."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.harness import loop_lag


def test_samples_are_dated_back_from_their_line_and_only_the_windows_count(tmp_path: Path) -> None:
    # One line a second, as command_center/loop_lag.py writes: samples 10 ms apart plus their lag, the last
    # taken at ``at``. The second line ends with a 200 ms stall, taken at 2.0 s; the sample before it was taken
    # 10 + 200 ms earlier, at 1.79 s.
    first = {"at": 1.0, "lag_ms": [0.5] * 95, "gc_ms": []}
    second = {"at": 2.0, "lag_ms": [0.5] * 60 + [200.0], "gc_ms": [[0, 3.0]]}
    lines = [first, second]
    path = tmp_path / "lag.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    inside = loop_lag(path, 0.0, 1.795)  # the window ends just after 1.79 s
    assert inside["max"] == 0.5 and inside["samples"] == 95 + 60
    assert inside["gc_passes"] == 1  # passes are not dated: a line reaching into the window brings its own
    assert loop_lag(path, 0.0, 2.0)["max"] == 200.0
    later = loop_lag(path, 1.0, 2.0)  # the first line's samples were all taken by 1.0 s: outside
    assert later["samples"] == 61 and later["max"] == 200.0
