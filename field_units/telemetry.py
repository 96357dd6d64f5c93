"""Validation of telemetry from field units: untrusted input in, a Position or a precise reason out.

Pure: no I/O, no clock (the caller passes ``now_ms``), so it is fuzzed without an event loop. The unit id
comes from the device credential and is never read from the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.ids import UnitId
from persistence.models import Position

MAX_FUTURE_MS = 60_000  # default: a fix more than a minute ahead of the server clock is a broken device clock
MAX_AGE_MS = 30 * 24 * 3600 * 1000  # a backlog older than 30 days is not a live unit's backlog
MAX_SEQ = 2**53 - 1  # exact in JavaScript, which displays it
MAX_SPEED_MPS = 90.0  # 324 km/h: faster is a GPS glitch, not an enforcement vehicle


Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    fix_time_ms: Annotated[int, Field(ge=0)]
    lat: Annotated[Finite, Field(ge=-90, le=90)]
    lon: Annotated[Finite, Field(ge=-180, le=180)]
    accuracy_m: Annotated[Finite, Field(ge=0, le=10_000)] | None = None
    speed_mps: Annotated[Finite, Field(ge=0, le=MAX_SPEED_MPS)] | None = None
    heading_deg: Annotated[Finite, Field(ge=0, lt=360)] | None = None
    altitude_m: Annotated[Finite, Field(ge=-500, le=9_000)] | None = None
    battery_pct: Annotated[Finite, Field(ge=0, le=100)] | None = None
    sos: bool = False


class _Fast(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``_Message``'s rules for msgspec, which checks a good message in about a fifth of pydantic's time.

    Only an acceptance is taken from it: anything it refuses goes through ``_Message`` again, whose
    per-field reasons units and tests rely on. A test holds the two to accepting the same messages."""

    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    fix_time_ms: Annotated[int, msgspec.Meta(ge=0)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]  # NaN and infinities fail the bounds
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=10_000)] | None = None
    speed_mps: Annotated[float, msgspec.Meta(ge=0, le=MAX_SPEED_MPS)] | None = None
    heading_deg: Annotated[float, msgspec.Meta(ge=0, lt=360)] | None = None
    altitude_m: Annotated[float, msgspec.Meta(ge=-500, le=9_000)] | None = None
    battery_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    sos: bool = False


_decode_checked = msgspec.json.Decoder(_Fast)


def decode_position(text: str | bytes) -> _Fast | None:
    """One position message (JSON text) decoded and checked in one pass, or None for anything else.

    The unit socket carries one position per message nearly always: parsing it straight into the checked
    form skips building a dict and converting it. A batch, a task update or a message with a mistake gives
    None, and the caller parses it the general way (``parse_batch``), whose refusals name the field."""
    try:
        return _decode_checked.decode(text)
    except msgspec.DecodeError:  # ValidationError included
        return None


def _validate(raw: Mapping[str, Any]) -> _Fast | _Message:
    """The message checked: by msgspec when it passes, else by pydantic (raises its ValidationError)."""
    if type(raw) is dict:
        try:
            return msgspec.convert(raw, _Fast, strict=True)
        except msgspec.ValidationError:
            pass
    return _Message.model_validate(raw)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message of a batch was refused; ``index`` is its place in the batch."""

    index: int
    seq: int | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seq": self.seq, "code": self.code, "message": self.message}


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "(message)"
        if err["type"] == "extra_forbidden":
            problem = "unknown field" + (" (the unit comes from the device credential)" if field == "unit_id" else "")
        else:
            problem = err["msg"]
        parts.append(f"{field}: {problem}")
    return "; ".join(parts)


def parse_position(
    raw: object, *, unit_id: UnitId, index: int, now_ms: int, max_future_ms: int = MAX_FUTURE_MS
) -> Position | Rejection:
    """One message of a batch: a Position, or a Rejection naming the field and the rule it broke.

    ``max_future_ms`` bounds the clock skew (``tracking.max_clock_skew_seconds``): GPS time is right, but
    many devices stamp fixes with their own drifting clock. ``raw`` may be what ``decode_position`` checked."""
    msg: _Fast | _Message
    if type(raw) is _Fast:
        msg = raw
    elif not isinstance(raw, Mapping):
        return Rejection(index, None, "validation_failed", f"a position must be a JSON object, not {_kind(raw)}")
    else:
        try:
            msg = _validate(raw)
        except ValidationError as exc:
            seq = raw.get("seq")
            return _reject(index, seq if isinstance(seq, int) and not isinstance(seq, bool) else None, _explain(exc))
    if msg.fix_time_ms > now_ms + max_future_ms:
        ahead_s = (msg.fix_time_ms - now_ms + 500) // 1000  # integers: a fix time of 10^90 must not overflow a float
        ahead = f"{ahead_s} s" if ahead_s < 10**7 else "more than 100 days"
        limit = max_future_ms / 1000
        return _reject(
            index,
            msg.seq,
            f"fix_time_ms: {ahead} ahead of the server's clock (limit {limit:g} s); check the device clock",
        )
    if msg.fix_time_ms < now_ms - MAX_AGE_MS:
        return _reject(index, msg.seq, "fix_time_ms: older than 30 days")
    return Position(  # positional (``Position``'s field order): once per message, keywords cost more
        unit_id, msg.seq, msg.fix_time_ms, msg.lat, msg.lon, msg.accuracy_m, msg.speed_mps, msg.heading_deg,
        msg.altitude_m, msg.battery_pct, msg.sos, now_ms,
    )  # fmt: skip


def parse_batch(
    raw: object, *, unit_id: UnitId, now_ms: int, limit: int, max_future_ms: int = MAX_FUTURE_MS
) -> tuple[list[Position], list[Rejection]]:
    """A message or an array of messages: the good ones kept, each bad one explained.

    Raises ``ValueError`` when the whole batch is unusable (not an object or array, or too long).
    Repeated seqs inside one batch keep the first occurrence and reject the rest.
    """
    if type(raw) is _Fast:  # the common message, one checked position: no list, no set of seqs
        parsed = parse_position(raw, unit_id=unit_id, index=0, now_ms=now_ms, max_future_ms=max_future_ms)
        return ([], [parsed]) if isinstance(parsed, Rejection) else ([parsed], [])
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise ValueError(f"expected a position object or an array of them, not {_kind(raw)}")
    if len(items) > limit:
        raise ValueError(f"{len(items)} positions in one batch; the limit is {limit}")
    good: list[Position] = []
    bad: list[Rejection] = []
    seen: set[int] = set()
    for index, item in enumerate(items):
        parsed = parse_position(item, unit_id=unit_id, index=index, now_ms=now_ms, max_future_ms=max_future_ms)
        if isinstance(parsed, Rejection):
            bad.append(parsed)
        elif parsed.seq in seen:
            bad.append(Rejection(index, parsed.seq, "validation_failed", f"seq {parsed.seq} repeated in this batch"))
        else:
            seen.add(parsed.seq)
            good.append(parsed)
    return good, bad


def _reject(index: int, seq: int | None, message: str) -> Rejection:
    return Rejection(index, seq, "validation_failed", message)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
