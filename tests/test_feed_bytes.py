"""What the live fan-out keeps between ticks is invisible to the garbage collector, and the messages screens
get are byte for byte what serialising the whole message gives (docs/protocols.md): the units feeds keep each
unit's newest view as bytes and put frames and snapshots together from them, whether the views came from this
process's tracker (serialised once, ``EncodedView``) or decoded from a bus shared with other processes."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from command_center.screens.feeds import UnitFeed, UnitsFeed
from core.ids import CourtId, UnitId
from event_bus.memory import MemoryBus
from event_bus.port import Event, encode_data
from field_units.views import EncodedView, encode_view, unit_view, units_topic
from persistence.models import Position, Unit, UnitKind, UnitState

COURT = CourtId("HLJ0102")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def position(unit_id: str, seq: int) -> Position:
    return Position(UnitId(unit_id), seq, 1_000 * seq, 45.75, 126.64, 5.0, None, 90.0, None, 80.0, False, 1_000 * seq)


def unit(i: int) -> Unit:
    return Unit(UnitId(f"HLJ0102-U{i:02}"), f'单兵 "{i}"', UnitKind.BODY_CAMERA, COURT, None, NOW)


def view(i: int, seq: int) -> dict[str, Any]:
    return unit_view(unit(i), UnitState(online=True, last_seen_ms=1_000 * seq), position(unit(i).id, seq))


class _Store:
    async def list_units(self, court_ids: list[CourtId]) -> list[Unit]:
        return [unit(i) for i in range(3)]

    async def get_unit(self, unit_id: UnitId) -> Unit:
        return unit(int(unit_id[-2:]))

    async def latest_positions(self, ids: list[UnitId]) -> dict[UnitId, Position]:
        return {UnitId(u): position(u, 1) for u in ids}

    async def unit_states(self, ids: list[UnitId]) -> dict[UnitId, UnitState]:
        return {}


class _Screen:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, *, topic: str | None = None, seq: int = 0) -> None:
        self.sent.append(data)


def encoded(i: int, seq: int) -> EncodedView:
    return encode_view(unit(i), UnitState(online=True, last_seen_ms=1_000 * seq), position(unit(i).id, seq))


def event(seq: int, views: list[Any], track: list[dict[str, Any]]) -> Event:
    return Event(units_topic(COURT), seq, 1_700_000_000.1234, {"units": views, "track": track})


@pytest.mark.parametrize("published", ["in this process", "through a shared bus"])
async def test_frames_and_snapshots_are_the_bytes_of_the_whole_message(published: str) -> None:
    feed = UnitsFeed(COURT, MemoryBus(), _Store())  # type: ignore[arg-type]
    await feed.reload()
    track = [{"unit_id": unit(1).id, "points": [[1000, 45.7, 126.6], [2000, 45.71, 126.61]]}]
    views = [view(1, 5), view(0, 6)]
    sent = [encoded(1, 5), encoded(0, 6)] if published == "in this process" else views
    frame = feed.apply(event(1, sent, track))
    assert frame == orjson.dumps({"type": "frame", "topic": feed.name, "seq": 1, "ts_ms": 1_700_000_000_123,
                                  "units": views, "track": track})  # fmt: skip
    assert feed.apply(event(2, [], [])) == orjson.dumps(
        {"type": "frame", "topic": feed.name, "seq": 2, "ts_ms": 1_700_000_000_123, "units": [], "track": []}
    )
    feed.seq = 2
    screen = _Screen()
    feed.send_snapshot(screen)  # type: ignore[arg-type]
    loaded = [unit_view(unit(i), UnitState(), position(unit(i).id, 1)) for i in range(3)]
    newest = [views[1], views[0], loaded[2]]  # in the order the units were loaded, each at its newest view
    assert screen.sent == [orjson.dumps({"type": "snapshot", "topic": feed.name, "seq": 2, "units": newest})]


async def test_a_unit_feed_keeps_and_sends_only_its_unit() -> None:
    feed = UnitFeed(unit(1).id, COURT, MemoryBus(), _Store())  # type: ignore[arg-type]
    await feed.reload()
    assert feed.apply(event(1, [view(0, 5)], [])) is None
    assert feed.apply(event(2, [encoded(0, 5)], [])) is None
    frame = feed.apply(event(3, [encoded(0, 6), encoded(1, 6)], []))
    assert orjson.loads(frame or b"")["units"] == [view(1, 6)]
    screen = _Screen()
    feed.send_snapshot(screen)  # type: ignore[arg-type]
    assert orjson.loads(screen.sent[0])["units"] == [view(1, 6)]


async def test_what_the_fan_out_keeps_per_unit_is_not_tracked_by_the_collector() -> None:
    feed = UnitsFeed(COURT, MemoryBus(), _Store())  # type: ignore[arg-type]
    await feed.reload()
    feed.apply(event(1, [view(1, 5)], []))
    assert feed.units and not any(gc.is_tracked(v) for v in feed.units.values())
    assert not gc.is_tracked(position("u", 1))
    # each message replaces its unit's state: a tracked one piled up in the young generation (net count)
    assert not gc.is_tracked(UnitState(online=True, last_seen_ms=1))
    # nor is the view the tracker publishes each tick, which the bus's history and the feeds hold
    assert not gc.is_tracked(encoded(1, 5))


@given(
    lat=st.floats(-90, 90), lon=st.floats(-180, 180), accuracy=st.none() | st.floats(0, 10_000),
    altitude=st.none() | st.floats(-500, 9_000), battery=st.none() | st.floats(0, 100),
    seen=st.none() | st.integers(0, 2**53), online=st.booleans(), sos=st.booleans(), placed=st.booleans(),
)  # fmt: skip
def test_a_view_serialised_once_is_the_json_of_the_view(
    lat: float, lon: float, accuracy: float | None, altitude: float | None, battery: float | None,
    seen: int | None, online: bool, sos: bool, placed: bool,
) -> None:  # fmt: skip
    """The tracker's bytes (msgspec) are the view's JSON as ``orjson`` writes it, over what validation lets in."""
    shown = Position(UnitId("u"), 7, 1_000, lat, lon, accuracy, None, 359.5, altitude, battery, sos, 2_000)
    state = UnitState(online=online, sos=sos, last_seen_ms=seen)
    one = encode_view(unit(3), state, shown if placed else None)
    as_dict = unit_view(unit(3), state, shown if placed else None)
    assert one.json == orjson.dumps(as_dict)
    assert (one.unit_id, one.status, one.last_seen_ms) == (as_dict["unit_id"], as_dict["status"], seen)
    # and a bus writes the bytes as they are, inside the event's JSON
    assert encode_data({"units": [one], "track": []}) == orjson.dumps({"units": [as_dict], "track": []})


def test_a_bus_refuses_what_it_cannot_serialise_by_name() -> None:
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        encode_data({"x": object()})
