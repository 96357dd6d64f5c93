"""Unit state shared between server processes: each process sends what changed, every process applies it.

A unit's telemetry reaches one process, an operator's command may reach another, and the offline sweeper
runs in a third (the leader). Every tick each process publishes, on the bus topic ``unit_states``, the
fields it changed (duty, SOS, online, last heard) and the newest position of units it heard. Every
process, the sender included, applies these deltas in the bus's order, so all copies end the same even
when two processes change one field at once: the later delta in the topic wins. "Last heard" and the
newest position only move forward, whoever reports them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from persistence.models import Duty, Position, UnitState

STATES_TOPIC = "unit_states"


def state_delta(old: UnitState, new: UnitState) -> dict[str, Any]:
    """The fields that differ, as JSON."""
    delta: dict[str, Any] = {}
    if old.duty != new.duty:
        delta["duty"] = new.duty.value
    if old.sos != new.sos:
        delta["sos"] = new.sos
    if old.online != new.online:
        delta["online"] = new.online
    if old.last_seen_ms != new.last_seen_ms and new.last_seen_ms is not None:
        delta["last_seen_ms"] = new.last_seen_ms
    return delta


def apply_delta(state: UnitState, delta: dict[str, Any]) -> UnitState:
    """Fold a delta (from any process) into a state."""
    last = delta.get("last_seen_ms")
    if last is not None and state.last_seen_ms is not None:
        last = max(last, state.last_seen_ms)
    return dataclasses.replace(
        state,
        duty=Duty(delta["duty"]) if "duty" in delta else state.duty,
        sos=bool(delta["sos"]) if "sos" in delta else state.sos,
        online=bool(delta["online"]) if "online" in delta else state.online,
        last_seen_ms=state.last_seen_ms if last is None else int(last),
    )


def position_as_json(position: Position) -> dict[str, Any]:
    return dataclasses.asdict(position)


def position_from_json(data: dict[str, Any]) -> Position:
    return Position(**data)


def newer(candidate: Position, current: Position | None) -> bool:
    return current is None or (candidate.fix_time_ms, candidate.seq) > (current.fix_time_ms, current.seq)
