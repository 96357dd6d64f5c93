"""A unit's status as a pure state machine: what the wall display shows, and when it changes.

Three independent facts make the status: the duty (available → en route → on site, set by the command
centre or the unit), an SOS that stays raised until an operator clears it, and whether the unit is online
(it is offline after a silence). The displayed status is SOS over offline over duty: a silent unit that
raised SOS is the most urgent thing on the wall. Times are milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

from msgspec.structs import replace

from core.errors import Conflict
from persistence.models import Duty, Status, UnitState

__all__ = ["DUTY_TRANSITIONS", "Duty", "Status", "UnitState", "clear_sos", "heard", "set_duty", "silence"]


#: Duty changes the command centre may make; anything else is refused with a reason.
DUTY_TRANSITIONS: dict[Duty, frozenset[Duty]] = {
    Duty.AVAILABLE: frozenset({Duty.EN_ROUTE, Duty.ON_SITE}),
    Duty.EN_ROUTE: frozenset({Duty.ON_SITE, Duty.AVAILABLE}),
    Duty.ON_SITE: frozenset({Duty.AVAILABLE, Duty.EN_ROUTE}),
}


def heard(state: UnitState, *, at_ms: int, sos: bool) -> UnitState:
    """The unit sent something: it is online; an SOS flag raises SOS (only an operator clears it)."""
    last = at_ms if state.last_seen_ms is None else max(state.last_seen_ms, at_ms)
    # built directly, not with ``replace``: this runs for every message of every unit
    return UnitState(duty=state.duty, sos=state.sos or sos, online=True, last_seen_ms=last)


def silence(state: UnitState, *, now_ms: int, offline_after_ms: int) -> UnitState:
    """Mark the unit offline when it has been silent for ``offline_after_ms``."""
    if state.online and (state.last_seen_ms is None or now_ms - state.last_seen_ms >= offline_after_ms):
        return replace(state, online=False)
    return state


def set_duty(state: UnitState, duty: Duty) -> UnitState:
    if duty == state.duty:
        raise Conflict(f"unit is already {duty.value}")
    if duty not in DUTY_TRANSITIONS[state.duty]:
        raise Conflict(f"cannot go from {state.duty.value} to {duty.value}")
    return replace(state, duty=duty)


def clear_sos(state: UnitState) -> UnitState:
    if not state.sos:
        raise Conflict("unit has no SOS raised")
    return replace(state, sos=False)
