"""Request rates per caller over a rolling window, shared by every server process when there are several.

The login throttle (``throttle.py``, ``shared_throttle.py``) answers failures with locks; this answers
plain volume: a caller (a user, a court) may make so many requests of one kind in any rolling window
(a moving window: no burst at a window's edge), and one more gets 429 with Retry-After. With several
processes the counts live in Redis (``limits``' moving window, one Lua script on Redis's clock), so a
caller does not get the allowance once per process; if Redis cannot be reached, this process's own counts
are used until it is back, as the login throttle does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from core.errors import TooManyRequests

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Allowance:
    """``amount`` requests of a kind per ``who`` (e.g. ``user``, ``court``) in any rolling hour."""

    who: str
    amount: int

    def item(self, kind: str) -> RateLimitItem:
        return RateLimitItemPerHour(self.amount, namespace=f"{kind}:{self.who}")


class RequestRates:
    def __init__(self, kind: str, allowances: list[Allowance], *, redis_url: str | None, namespace: str) -> None:
        """``kind`` names what is counted (``entrustments``); ``redis_url``: share the counts (None: this process)."""
        self._kind = kind
        self._items = {a.who: a.item(kind) for a in allowances}
        self._local: Storage = MemoryStorage()
        self._shared: Storage | None = None
        if redis_url is not None:
            self._shared = RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=f"{namespace}:rates")

    async def close(self) -> None:
        await self._local.reset()

    async def hit(self, **callers: str) -> None:
        """Count one request for each caller named (``user="17", court="HLJ0102"``) if every allowance has room;
        TooManyRequests (with when to retry) naming the allowance that has none, nothing counted."""
        try:
            await self._hit(self._shared or self._local, callers)
        except TooManyRequests:
            raise
        except Exception as exc:
            if self._shared is None:
                raise
            log.warning("request rates (%s): Redis unavailable (%s); this process's counts are used", self._kind, exc)
            await self._hit(self._local, callers)

    async def _hit(self, storage: Storage, callers: dict[str, str]) -> None:
        limiter = MovingWindowRateLimiter(storage)
        for who, ident in callers.items():
            item = self._items[who]
            if not await limiter.test(item, ident):
                stats = await limiter.get_window_stats(item, ident)
                raise TooManyRequests(
                    f"{self._kind}: at most {item.amount} an hour per {who} ({who} {ident}); try again later",
                    retry_after=max(1.0, stats.reset_time - time.time()),
                )
        for who, ident in callers.items():
            await limiter.hit(self._items[who], ident)
