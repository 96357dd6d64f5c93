"""Pure rules guarding query submissions: the Idempotency-Key's shape, what makes two requests "the same",
and the per-judge limits (how many queries an hour and a day, and when the next one is admitted).

No I/O: the API reads the judge's query times from the store (so the limits hold across processes) and
hands them here; tests drive these functions with plain values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import ValidationFailed

KEY_MAX_LENGTH = 128
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def check_idempotency_key(raw: str | None) -> str | None:
    """The key as given, or None when absent; ValidationFailed naming the problem when it is not 1…128
    printable ASCII characters (0x21-0x7E: a space or a control character is refused, never trimmed,
    since two keys that print alike must be one key)."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= KEY_MAX_LENGTH:
        raise ValidationFailed(
            f"Idempotency-Key: 1 to {KEY_MAX_LENGTH} printable ASCII characters, got {len(raw)} characters"
        )
    for index, char in enumerate(raw):
        if not "\x21" <= char <= "\x7e":
            raise ValidationFailed(
                f"Idempotency-Key: character {index + 1} is {char!r} (U+{ord(char):04X}); only printable ASCII"
                " without spaces is allowed"
            )
    return raw


def followup_id_for(key: str, requester: int) -> str:
    """A follow-up's id, from its Idempotency-Key and who asked: the same judge's retry finds the same
    follow-up, while two judges who happen to choose the same key get two follow-ups and never learn of each
    other's (a key alone would be global). It is the agency's Idempotency-Key too, and a path segment
    (``/api/followups/{id}/approve``), so it is a digest: URL-safe whatever the key holds."""
    return "k-" + hashlib.sha256(f"{requester}\n{key}".encode()).hexdigest()[:40]


def request_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the request's canonical JSON: the same selection in the same words is the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LimitRefusal:
    message: str
    retry_after_seconds: int


def check_limits(times_ms: Sequence[int], now_ms: int, *, per_hour: int, per_day: int) -> LimitRefusal | None:
    """None when one more query is admitted; else why not and in how many seconds it will be.

    ``times_ms`` are the judge's queries of the last day (any order). Windows roll: with ``n`` queries in the
    window and a limit ``L``, the next one is admitted once the ``n - L + 1`` oldest have left it.
    """
    for window_ms, limit, name in ((HOUR_MS, per_hour, "hour"), (DAY_MS, per_day, "24 hours")):
        inside = sorted(t for t in times_ms if t > now_ms - window_ms)
        if len(inside) >= limit:
            frees_at = inside[len(inside) - limit] + window_ms
            wait = max(1, -(-(frees_at - now_ms) // 1000))
            return LimitRefusal(
                f"query limit reached: {len(inside)} queries in the last {name} (at most {limit} per judge);"
                f" the next one is admitted in {wait} s",
                wait,
            )
    return None
