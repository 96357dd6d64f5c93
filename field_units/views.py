"""What screens receive about units, and the bus topic it travels on (docs/protocols.md).

A UnitView is built once per unit and tick by the tracker and serialised there, once: every feed of this
process splices those bytes into its frames and keeps them as the unit's newest, and the bus writes them as
they are into its history (``event_bus.port.Preencoded``). From a bus shared by several processes a view
arrives decoded, as a dict, and ``encoded_views`` serialises it there instead.

Built as msgspec Structs and encoded by msgspec: 0.85 µs a view, where building the two dicts and
``orjson.dumps`` took 2.7 µs, and each view was serialised twice more (the bus's history, every feed).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from core.ids import CourtId
from event_bus.port import Preencoded
from persistence.models import Position, PositionView, Unit, UnitState


def units_topic(court_id: CourtId) -> str:
    return f"units.{court_id}"


class UnitView(msgspec.Struct, frozen=True, gc=False):
    """A UnitView: identity, displayed status, newest position and when the unit was last heard."""

    unit_id: str
    name: str
    kind: str
    court_id: str
    status: str
    # The one meaning of "online" (wall, console, /api/stats): heard within the unit's offline delay. A
    # silent unit in SOS shows status "sos" and is not online.
    online: bool
    position: PositionView | None
    last_seen_ms: int | None


class EncodedView(Preencoded, frozen=True, gc=False):
    """A UnitView as JSON (``json``), with what feeds read of it without decoding: whose it is (to filter
    and to keep it as the unit's newest) and how old the report is (the unit→screen latency metric)."""

    unit_id: str
    status: str
    last_seen_ms: int | None


_encode = msgspec.json.Encoder().encode


def _view(unit: Unit, state: UnitState, position: Position | None) -> UnitView:
    shown = None if position is None else position.shown()
    # The enum members themselves (StrEnums, written as their strings): ``.value`` is a Python property call.
    return UnitView(unit.id, unit.name, unit.kind, unit.court_id, state.status, state.online, shown, state.last_seen_ms)


def unit_view(unit: Unit, state: UnitState, position: Position | None) -> dict[str, Any]:
    """The UnitView as a dict (an API response)."""
    view: dict[str, Any] = msgspec.to_builtins(_view(unit, state, position))
    return view


def encode_view(unit: Unit, state: UnitState, position: Position | None) -> EncodedView:
    """The UnitView serialised, once, for the bus and every feed."""
    view = _view(unit, state, position)
    return EncodedView(_encode(view), view.unit_id, view.status, view.last_seen_ms)


def encoded_views(items: list[Any]) -> list[EncodedView]:
    """A units event's views as published in this process (as they are), or decoded from a bus shared with
    other processes (each serialised here: the same bytes, ``orjson`` writing what msgspec wrote)."""
    return [
        v if type(v) is EncodedView else EncodedView(orjson.dumps(v), v["unit_id"], v["status"], v["last_seen_ms"])
        for v in items
    ]
