"""The unit status state machine (pure)."""

from __future__ import annotations

import pytest

from core.errors import Conflict
from field_units.status import clear_sos, heard, set_duty, silence
from persistence.models import Duty, Status, UnitState


def test_a_new_unit_is_offline_until_heard() -> None:
    assert UnitState().status is Status.OFFLINE
    assert heard(UnitState(), at_ms=1000, sos=False).status is Status.AVAILABLE


def test_silence_marks_offline_and_the_next_message_restores_the_duty() -> None:
    state = set_duty(heard(UnitState(), at_ms=0, sos=False), Duty.EN_ROUTE)
    assert silence(state, now_ms=59_999, offline_after_ms=60_000) == state
    quiet = silence(state, now_ms=60_000, offline_after_ms=60_000)
    assert quiet.status is Status.OFFLINE and quiet.duty is Duty.EN_ROUTE
    assert heard(quiet, at_ms=61_000, sos=False).status is Status.EN_ROUTE


def test_sos_wins_over_offline_and_stays_until_cleared() -> None:
    state = heard(UnitState(), at_ms=0, sos=True)
    assert state.status is Status.SOS
    assert heard(state, at_ms=1, sos=False).status is Status.SOS  # a later message without the flag
    silent = silence(state, now_ms=100_000, offline_after_ms=60_000)
    assert silent.status is Status.SOS and not silent.online
    cleared = clear_sos(silent)
    assert cleared.status is Status.OFFLINE
    with pytest.raises(Conflict, match="no SOS"):
        clear_sos(cleared)


def test_duty_transitions() -> None:
    state = heard(UnitState(), at_ms=0, sos=False)
    on_site = set_duty(set_duty(state, Duty.EN_ROUTE), Duty.ON_SITE)
    assert on_site.status is Status.ON_SITE
    assert set_duty(on_site, Duty.AVAILABLE).status is Status.AVAILABLE
    with pytest.raises(Conflict, match="already on_site"):
        set_duty(on_site, Duty.ON_SITE)


def test_last_seen_never_moves_back() -> None:
    state = heard(heard(UnitState(), at_ms=5000, sos=False), at_ms=3000, sos=False)
    assert state.last_seen_ms == 5000
