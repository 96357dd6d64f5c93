"""Circuit breaker per agency: a pure state machine; the caller passes the (monotonic) time in.

closed ──N consecutive failures──▶ open ──reset_after elapsed──▶ half-open (one probe allowed)
half-open ──probe succeeds──▶ closed;  half-open ──probe fails──▶ open (timer restarts).
While open, requests are not sent: an agency that is down is not hammered, and the jobs fail at once
with a clear reason instead of burning the query's deadline on connection attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int
    reset_after: float  # seconds
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probe_out: bool = False

    def allow(self, now: float) -> bool:
        """May a request be sent now? In half-open state only one probe at a time is let through."""
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.reset_after:
                return False
            self.state = BreakerState.HALF_OPEN
            self.probe_out = False
        if self.state is BreakerState.HALF_OPEN:
            if self.probe_out:
                return False
            self.probe_out = True
        return True

    def success(self, now: float) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.probe_out = False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now
            self.probe_out = False

    def release(self) -> None:
        """A let-through request ended without a verdict (cancelled): let another probe through."""
        self.probe_out = False

    def retry_in(self, now: float) -> float:
        """Seconds until a probe may go (0 when one may go now)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.reset_after - (now - self.opened_at))
        return 0.0


def backoff_delay(attempt: int, base_seconds: float, cap_seconds: float, unit_random: float) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base·2^(attempt-1))) for retry number ``attempt``
    (1 for the first retry). ``unit_random`` in [0, 1) is passed in so the function stays pure."""
    return float(unit_random * min(cap_seconds, base_seconds * 2 ** max(0, attempt - 1)))


def may_retry(*, attempts_made: int, retries: int, now: float, delay: float, deadline: float) -> bool:
    """A transient failure is retried while the budget lasts and the retry would start before the deadline."""
    return attempts_made <= retries and now + delay < deadline
