"""Failed REGISTERs per source address in a sliding minute: password guessing is slowed, NAT fleets are not.

Only failures count (unknown or revoked device, wrong digest), since a carrier's NAT may put hundreds of
honest devices behind one address. Memory is bounded: at most ``max_addresses`` are tracked, the oldest
forgotten first. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict, deque

WINDOW_SECONDS = 60.0


class FailureThrottle:
    def __init__(self, limit: int, *, window: float = WINDOW_SECONDS, max_addresses: int = 10_000) -> None:
        self._limit = limit
        self._window = window
        self._max = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, address: str, now: float) -> bool:
        times = self._failures.get(address)
        if times is None:
            return False
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[address]
            return False
        return len(times) >= self._limit

    def failed(self, address: str, now: float) -> None:
        times = self._failures.pop(address, None) or deque(maxlen=self._limit)
        times.append(now)
        self._failures[address] = times  # most recent last
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    def retry_after(self, address: str, now: float) -> int:
        times = self._failures.get(address)
        if not times:
            return 0
        return max(1, int(times[0] + self._window - now) + 1)
