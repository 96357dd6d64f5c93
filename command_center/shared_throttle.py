"""Login throttling shared by every server process, in Redis: the same policy as ``throttle.Throttle``
(free attempts, a 30 s lock doubling per further failure up to 15 minutes, forgotten after an hour of quiet),
kept in one hash per username and per address and updated by one script, on Redis's clock.

If Redis cannot be reached the process falls back to its own records (``LocalLoginGuard``): logins keep
working and are still throttled, per process, until Redis is back.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from command_center.throttle import (
    ADDRESS_FREE_ATTEMPTS,
    FIRST_LOCK_S,
    FORGET_AFTER_S,
    MAX_LOCK_S,
    USER_FREE_ATTEMPTS,
    LocalLoginGuard,
)

log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
# KEYS: record. ARGV: free attempts, first lock, max lock, forget after (s). Count a failure; lock past the free ones.
_FAILED = (
    _NOW
    + """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local free = tonumber(ARGV[1])
if failures >= free then
  local lock = math.min(tonumber(ARGV[2]) * 2 ^ (failures - free), tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'locked_until', tostring(now + lock))
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return failures
"""
)
# KEYS: user record, address record. Seconds still to wait (as a string: Lua numbers become integers).
_WAIT = (
    _NOW
    + """
local wait = 0
for _, key in ipairs(KEYS) do
  local locked = tonumber(redis.call('HGET', key, 'locked_until') or '0')
  wait = math.max(wait, locked - now)
end
return tostring(wait)
"""
)


class RedisLoginGuard:
    def __init__(self, url: str, *, namespace: str) -> None:
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._ns = namespace
        self._failed: Any = self._redis.register_script(_FAILED)
        self._wait: Any = self._redis.register_script(_WAIT)
        self._fallback = LocalLoginGuard()

    async def close(self) -> None:
        await self._redis.aclose()

    def _user(self, username: str) -> str:
        return f"{self._ns}:login:user:{username.lower()}"

    def _address(self, address: str) -> str:
        return f"{self._ns}:login:address:{address}"

    async def wait_seconds(self, username: str, address: str) -> float:
        try:
            return max(0.0, float(await self._wait(keys=[self._user(username), self._address(address)])))
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s); this process's records are used", exc)
            return await self._fallback.wait_seconds(username, address)

    async def failed(self, username: str, address: str) -> None:
        await self._fallback.failed(username, address)  # kept here too, for when Redis is away
        try:
            forget = int(FORGET_AFTER_S)
            await self._failed(keys=[self._user(username)], args=[USER_FREE_ATTEMPTS, FIRST_LOCK_S, MAX_LOCK_S, forget])
            await self._failed(keys=[self._address(address)],
                               args=[ADDRESS_FREE_ATTEMPTS, FIRST_LOCK_S, MAX_LOCK_S, forget])  # fmt: skip
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s); failure kept in this process only", exc)

    async def succeeded(self, username: str) -> None:
        await self._fallback.succeeded(username)
        try:
            await self._redis.delete(self._user(username))
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s)", exc)
