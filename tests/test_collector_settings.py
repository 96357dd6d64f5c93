"""The serving process's collector settings (command_center/cli.py): every second automatic pass is a middle
one, so a middle pass walks the young objects and the survivors of one young pass only, never several
young passes' worth (the event loop stands still for as long as a pass walks)."""

from __future__ import annotations

import gc

from command_center.cli import COLLECTOR_THRESHOLDS


def test_young_and_middle_passes_alternate() -> None:
    generations: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    gc.callbacks.append(record)
    kept: list[list[int]] = []
    try:
        while len(generations) < 6:
            kept.append([])  # tracked objects that stay alive: the net count grows
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*before)
    assert generations[:6] == [0, 1, 0, 1, 0, 1]
