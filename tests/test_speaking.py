"""Who speaks, from packets alone (``media.speaking``): a turn starts after ~200 ms of voice, survives short
pauses, ends after 800 ms without voice (also when nothing arrives at all, as with DTX), and is reported once."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from media.speaking import OFF_MS, ON_MS, SpeakingProtocol, voice_by_level, voice_by_size


def test_a_turn_starts_after_sustained_voice_and_ends_after_silence() -> None:
    speaking = SpeakingProtocol()
    changes = [speaking.packet(True, t) for t in range(0, int(ON_MS), 20)]
    assert changes == [None] * len(changes) and not speaking.speaking  # 180 ms: not yet
    assert speaking.packet(True, ON_MS) is True
    for t in range(int(ON_MS) + 20, 1_000, 20):  # a breath of 300 ms without voice does not end the turn
        assert speaking.packet(not 500 <= t < 800, t) is None
    assert speaking.tick(980 + OFF_MS - 1) is None and speaking.speaking
    assert speaking.tick(980 + OFF_MS) is False  # DTX: silence may send nothing, the clock ends the turn
    assert speaking.ended is not None and speaking.ended.started_ms == 0 and speaking.ended.duration_ms == 980
    assert speaking.tick(5_000) is None  # reported once


def test_scattered_voice_packets_do_not_start_a_turn() -> None:
    speaking = SpeakingProtocol()
    for t in range(0, 5_000, 200):  # a click every 200 ms: runs never last ON_MS
        assert speaking.packet(True, t) is None
    assert not speaking.speaking


def test_stopping_ends_a_turn_under_way() -> None:
    speaking = SpeakingProtocol()
    for t in range(0, 400, 20):
        speaking.packet(True, t)
    assert speaking.speaking and speaking.stop(400) is False and speaking.ended is not None
    assert speaking.stop(500) is None


def test_voice_is_read_from_levels_or_sizes() -> None:
    assert voice_by_level(30) and not voice_by_level(127)  # RFC 6464: −30 dBov speech, −127 dBov silence
    assert voice_by_size(80) and not voice_by_size(3)  # Opus: a voice frame, a silence frame


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=200))
def test_changes_alternate_and_every_ended_turn_is_reported(steps: list[tuple[bool, int]]) -> None:
    speaking, now, changes = SpeakingProtocol(), 0.0, []
    for voice, gap in steps:
        now += gap
        change = speaking.packet(voice, now)
        if change is not None:
            changes.append(change)
            if change is False:
                assert speaking.ended is not None and speaking.ended.duration_ms >= 0
    assert all(a != b for a, b in itertools.pairwise(changes))
    assert not changes or changes[0] is True
