"""Telemetry validation (pure, no event loop): precise reasons, good messages kept beside bad ones."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ids import UnitId
from field_units.telemetry import MAX_FUTURE_MS, Rejection, decode_position, parse_batch, parse_position
from field_units.tracker import Ack
from persistence.models import Position

NOW = 1_763_800_000_000
UNIT = UnitId("HLJ0102-U01")


def good(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "seq": 7, "fix_time_ms": NOW - 1000, "lat": 45.757, "lon": 126.642, "accuracy_m": 4.5, "speed_mps": 1.3,
        "heading_deg": 270.0, "altitude_m": 151.0, "battery_pct": 88, "sos": False,
    }  # fmt: skip
    message.update(changes)
    return message


def test_a_good_message_becomes_a_position() -> None:
    position = parse_position(good(), unit_id=UNIT, index=0, now_ms=NOW)
    assert position == Position(UNIT, 7, NOW - 1000, 45.757, 126.642, 4.5, 1.3, 270.0, 151.0, 88.0, False, NOW)


def test_optional_fields_may_be_missing_or_null() -> None:
    position = parse_position(
        {"seq": 1, "fix_time_ms": NOW, "lat": 0, "lon": 0, "speed_mps": None}, unit_id=UNIT, index=0, now_ms=NOW
    )
    assert isinstance(position, Position) and position.speed_mps is None and position.sos is False


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lat": 90.5}, "lat: Input should be less than or equal to 90"),
        ({"lon": -180.01}, "lon: Input should be greater than or equal to -180"),
        ({"lat": math.nan}, "lat: Input should be a finite number"),
        ({"lon": math.inf}, "lon: Input should be a finite number"),
        ({"speed_mps": 120.0}, "speed_mps: Input should be less than or equal to 90"),
        ({"heading_deg": 360.0}, "heading_deg: Input should be less than 360"),
        ({"battery_pct": -1}, "battery_pct: Input should be greater than or equal to 0"),
        ({"seq": -1}, "seq: Input should be greater than or equal to 0"),
        ({"seq": "7"}, "seq: Input should be a valid integer"),
        ({"seq": True}, "seq: Input should be a valid integer"),
        ({"lat": "45.7"}, "lat: Input should be a valid number"),
        ({"sos": "yes"}, "sos: Input should be a valid boolean"),
        ({"unit_id": "HLJ0102-U09"}, "unit_id: unknown field (the unit comes from the device credential)"),
        ({"fix_time_ms": NOW + MAX_FUTURE_MS + 60_000}, "fix_time_ms: 120 s ahead of the server's clock (limit 60 s)"),
        ({"fix_time_ms": NOW - 31 * 24 * 3600 * 1000}, "fix_time_ms: older than 30 days"),
        ({"fix_time_ms": 10**90}, "fix_time_ms: more than 100 days ahead of the server's clock"),  # once a 500
    ],
)
def test_bad_fields_are_named_with_the_rule(changes: dict[str, Any], expected: str) -> None:
    result = parse_position(good(**changes), unit_id=UNIT, index=3, now_ms=NOW)
    assert isinstance(result, Rejection)
    assert result.index == 3 and result.code == "validation_failed"
    assert expected in result.message, result.message


def test_missing_fields_are_all_listed() -> None:
    result = parse_position({"seq": 1}, unit_id=UNIT, index=0, now_ms=NOW)
    assert isinstance(result, Rejection) and result.seq == 1
    for name in ("fix_time_ms", "lat", "lon"):
        assert f"{name}: Field required" in result.message


def test_a_batch_keeps_good_messages_next_to_bad_ones() -> None:
    batch = [good(seq=1), good(seq=2, lat=200), "junk", good(seq=3), good(seq=3, lat=1.0), good(seq=4)]
    positions, rejections = parse_batch(batch, unit_id=UNIT, now_ms=NOW, limit=100)
    assert [p.seq for p in positions] == [1, 3, 4]
    assert [(r.index, r.seq) for r in rejections] == [(1, 2), (2, None), (4, 3)]
    assert rejections[1].message == "a position must be a JSON object, not a string"
    assert "repeated" in rejections[2].message


def test_unusable_batches_raise() -> None:
    with pytest.raises(ValueError, match="not a string"):
        parse_batch("hello", unit_id=UNIT, now_ms=NOW, limit=10)
    with pytest.raises(ValueError, match="limit is 2"):
        parse_batch([good(seq=1), good(seq=2), good(seq=3)], unit_id=UNIT, now_ms=NOW, limit=2)
    single, _ = parse_batch(good(seq=9), unit_id=UNIT, now_ms=NOW, limit=1)
    assert [p.seq for p in single] == [9]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
field_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
near_valid = st.fixed_dictionaries(
    {}, optional={k: field_values for k in ("seq", "fix_time_ms", "lat", "lon", "speed_mps", "heading_deg", "sos")}
)


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values | near_valid, max_size=8))
def test_any_input_is_either_a_valid_position_or_an_explained_rejection(batch: list[Any]) -> None:
    positions, rejections = parse_batch(batch, unit_id=UNIT, now_ms=NOW, limit=100)
    assert len(positions) + len(rejections) == len(batch)
    for p in positions:
        assert -90 <= p.lat <= 90 and -180 <= p.lon <= 180 and math.isfinite(p.lat) and math.isfinite(p.lon)
        assert p.fix_time_ms <= NOW + MAX_FUTURE_MS and p.seq >= 0 and p.unit_id == UNIT
        assert p.speed_mps is None or 0 <= p.speed_mps <= 90
    for r in rejections:
        assert r.message and 0 <= r.index < len(batch)


number_values = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from([0, 90, -90, 180, -180, 360, 359.99, 100, 10_000, 9_000, -500, 2**53 - 1, 2**53, 10**400])
)
any_field = number_values | st.none() | st.booleans() | st.text(max_size=3)
fields = ("seq", "fix_time_ms", "lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m", "battery_pct")


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from((*fields, "sos")), any_field, max_size=4),
    st.lists(st.sampled_from(fields), max_size=2),
    st.booleans(),
)
def test_the_fast_check_accepts_exactly_what_the_precise_one_does(
    changes: dict[str, Any], removed: list[str], extra: bool
) -> None:
    """msgspec checks good messages on the hot path; a message it passes must pass pydantic's rules with the
    same values, and one it refuses goes to pydantic for the reason (so the reasons never change)."""
    from pydantic import ValidationError

    from field_units.telemetry import _Fast, _Message

    message = good(**changes)
    for name in removed:
        message.pop(name, None)
    if extra:
        message["unit_id"] = "HLJ0102-U09"
    try:
        precise: Any = _Message.model_validate(message)
    except ValidationError:
        precise = None
    try:
        fast: Any = msgspec.convert(message, _Fast, strict=True)
    except msgspec.ValidationError:
        fast = None
    assert (fast is None) == (precise is None), (message, fast, precise)
    if fast is not None:
        assert msgspec.structs.asdict(fast) == precise.model_dump()


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(st.sampled_from((*fields, "sos")), any_field, max_size=4),
    st.lists(st.sampled_from(fields), max_size=2),
    st.booleans(),
)
def test_one_pass_decoding_accepts_exactly_what_the_general_path_does(
    changes: dict[str, Any], removed: list[str], extra: bool
) -> None:
    """The unit socket decodes a single position straight from its JSON text; the position it gives must be
    the one the general path (orjson, then the checks) gives, and what it refuses the general path refuses."""
    message = good(**changes)
    for name in removed:
        message.pop(name, None)
    if extra:
        message["unit_id"] = "HLJ0102-U09"
    text = json.dumps(message)  # NaN and infinities as their (invalid) JSON tokens
    try:
        general: Any = parse_position(orjson.loads(text), unit_id=UNIT, index=0, now_ms=NOW)
    except orjson.JSONDecodeError:
        general = None
    checked = decode_position(text)
    one_pass: Any = None if checked is None else parse_position(checked, unit_id=UNIT, index=0, now_ms=NOW)
    if isinstance(general, Position):
        assert one_pass == general, (text, one_pass, general)
    else:
        assert not isinstance(one_pass, Position), (text, one_pass, general)


@given(
    stored=st.lists(st.integers(0, 2**53 - 1), max_size=3),
    duplicates=st.lists(st.integers(0, 2**53 - 1), max_size=2),
    rejected=st.lists(
        st.builds(Rejection, st.integers(0, 10), st.none() | st.integers(0, 99), st.just("validation_failed"),
                  st.text(max_size=20)),
        max_size=2,
    ),
)  # fmt: skip
def test_an_ack_is_encoded_as_its_dict_whatever_it_holds(
    stored: list[int], duplicates: list[int], rejected: list[Rejection]
) -> None:
    # ``Ack.encode`` writes the ack of one stored position by hand; every other ack goes through orjson
    ack = Ack(stored, duplicates, rejected)
    assert orjson.loads(ack.encode()) == ack.as_dict() == {
        "type": "ack", "stored": stored, "duplicates": duplicates, "rejected": [r.as_dict() for r in rejected]
    }  # fmt: skip
