"""Unit state shared between server processes: each process sends what changed, every process applies it.

A unit's telemetry reaches one process, an operator's command may reach another, and the offline sweeper
runs in a third (the leader). Every tick each process publishes, on the bus topic ``unit_states``, the
status fields it changed (duty, SOS, online) and when it last heard each unit it heard. Every process, the
sender included, applies these in the bus's order, so all copies end the same even when two processes change
one field at once: the later change in the topic wins. "Last heard" only moves forward, whoever reports it.

Positions are not sent: they are many (one per unit per second) and every screen gets them through its
court's topic already; a process that needs another process's newest positions reads them from the store
(``unit_latest``, kept current by the writers).
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from persistence.models import Duty, UnitState

STATES_TOPIC = "unit_states"


def state_delta(old: UnitState, new: UnitState) -> dict[str, Any]:
    """The status fields that differ, as JSON (last heard travels apart: ``heard``)."""
    delta: dict[str, Any] = {}
    if old.duty != new.duty:
        delta["duty"] = new.duty.value
    if old.sos != new.sos:
        delta["sos"] = new.sos
    if old.online != new.online:
        delta["online"] = new.online
    return delta


def apply_delta(state: UnitState, delta: dict[str, Any]) -> UnitState:
    """Fold a status delta (from any process) into a state."""
    return replace(
        state,
        duty=Duty(delta["duty"]) if "duty" in delta else state.duty,
        sos=bool(delta["sos"]) if "sos" in delta else state.sos,
        online=bool(delta["online"]) if "online" in delta else state.online,
    )


def heard_at(state: UnitState, last_seen_ms: int) -> UnitState:
    """Another process heard the unit at this time (last heard never moves back)."""
    if state.last_seen_ms is not None and state.last_seen_ms >= last_seen_ms:
        return state
    return replace(state, last_seen_ms=int(last_seen_ms))
