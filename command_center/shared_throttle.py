"""Throttles shared by every server process, in Redis: logins and media requests.

Login throttling has the same policy as ``throttle.LoginThrottle`` (the username at an address, the username
across addresses, the address; see there), one hash per record, checked and counted by one script on Redis's
clock, so parallel attempts on several processes cannot all pass a check before any of them is counted.
Media requests (WHIP/WHEP/talkback POST, PATCH, DELETE) are counted per caller in a moving minute, one sorted
set per caller, by one script likewise (``RedisMediaRates``).

If Redis cannot be reached the process falls back to its own records (``LocalLoginGuard``, ``MediaRates``):
logins and media keep working and are still throttled, per process, until Redis is back.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis.asyncio as aioredis

from command_center.media_http import MediaRates, too_many
from command_center.throttle import (
    ADDRESS_FREE_ATTEMPTS,
    FIRST_LOCK_S,
    FORGET_AFTER_S,
    MAX_LOCK_S,
    PAIR_FREE_ATTEMPTS,
    USER_FIRST_DELAY_S,
    USER_FREE_ATTEMPTS,
    USER_MAX_DELAY_S,
    LocalLoginGuard,
)
from core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
# KEYS: pair record, user record, address record, the user's set of addresses with a pair record.
# ARGV: forget after (s), the address, then (free, first lock, max lock) for the pair, user and address records.
# Locked: the seconds still to wait, nothing counted. Otherwise count the attempt everywhere and return 0.
# (Results are strings: Lua numbers become integers on the way out.)
_ATTEMPT = (
    _NOW
    + """
local wait = 0
for i = 1, 3 do
  local locked = tonumber(redis.call('HGET', KEYS[i], 'locked_until') or '0')
  wait = math.max(wait, locked - now)
end
if wait > 0 then return tostring(wait) end
for i = 1, 3 do
  local failures = redis.call('HINCRBY', KEYS[i], 'failures', 1)
  local free = tonumber(ARGV[3 * i])
  if failures >= free then
    local lock = math.min(tonumber(ARGV[3 * i + 1]) * 2 ^ (failures - free), tonumber(ARGV[3 * i + 2]))
    redis.call('HSET', KEYS[i], 'locked_until', tostring(now + lock))
  end
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[1])
return '0'
"""
)
# KEYS: pair record, user record, address record. ARGV: the address's free attempts. A success.
_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local failures = redis.call('HINCRBY', KEYS[3], 'failures', -1)
  if failures < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[3], 'locked_until') end
end
return 0
"""
# KEYS: user record, the user's set of addresses. ARGV: prefix of the user's pair records. Records removed.
_UNLOCK = """
local removed = redis.call('DEL', KEYS[1])
for _, address in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  removed = removed + redis.call('DEL', ARGV[1] .. address)
end
redis.call('DEL', KEYS[2])
return removed
"""


class RedisLoginGuard:
    def __init__(self, url: str, *, namespace: str) -> None:
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._ns = namespace
        self._attempt: Any = self._redis.register_script(_ATTEMPT)
        self._succeeded: Any = self._redis.register_script(_SUCCEEDED)
        self._unlock: Any = self._redis.register_script(_UNLOCK)
        self._fallback = LocalLoginGuard()

    async def close(self) -> None:
        await self._redis.aclose()

    def _keys(self, username: str, address: str) -> list[str]:
        user = username.lower()
        return [self._pair_prefix(user) + address, f"{self._ns}:login:user:{user}",
                f"{self._ns}:login:address:{address}", f"{self._ns}:login:addresses-of:{user}"]  # fmt: skip

    def _pair_prefix(self, user: str) -> str:
        return f"{self._ns}:login:pair:{user}\n"

    async def attempt(self, username: str, address: str) -> float:
        try:
            args = [int(FORGET_AFTER_S), address, PAIR_FREE_ATTEMPTS, FIRST_LOCK_S, MAX_LOCK_S,
                    USER_FREE_ATTEMPTS, USER_FIRST_DELAY_S, USER_MAX_DELAY_S,
                    ADDRESS_FREE_ATTEMPTS, FIRST_LOCK_S, MAX_LOCK_S]  # fmt: skip
            wait = max(0.0, float(await self._attempt(keys=self._keys(username, address), args=args)))
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s); this process's records are used", exc)
            return await self._fallback.attempt(username, address)
        if wait == 0:
            await self._fallback.attempt(username, address)  # kept here too, for when Redis is away
        return wait

    async def succeeded(self, username: str, address: str) -> None:
        await self._fallback.succeeded(username, address)
        try:
            await self._succeeded(keys=self._keys(username, address)[:3], args=[ADDRESS_FREE_ATTEMPTS])
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s)", exc)

    async def unlock(self, username: str) -> int:
        local = await self._fallback.unlock(username)
        user = username.lower()
        keys = [f"{self._ns}:login:user:{user}", f"{self._ns}:login:addresses-of:{user}"]
        try:
            removed = int(await self._unlock(keys=keys, args=[self._pair_prefix(user)]))
        except Exception as exc:
            log.warning("login throttling: Redis unavailable (%s); unlock not shared", exc)
            raise ServiceUnavailable("the shared login records (Redis) are unavailable; try again shortly") from exc
        return max(local, removed)


# KEYS: the caller's requests (a sorted set scored by Redis's clock in ms). ARGV: limit, window (ms), a unique
# member. Past the limit: the ms until the oldest counted request leaves the window, nothing counted.
_MEDIA_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return '0'
"""


class RedisMediaRates:
    """``media.requests_per_minute`` per caller across every process (a moving window, as ``MediaRates``)."""

    WINDOW_MS = 60_000

    def __init__(self, url: str, *, namespace: str, per_minute: int) -> None:
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._ns = namespace
        self._per_minute = per_minute
        self._hit: Any = self._redis.register_script(_MEDIA_HIT)
        self._fallback = MediaRates(per_minute)

    async def check(self, who: str) -> None:
        try:
            wait_ms = float(await self._hit(keys=[f"{self._ns}:media-rate:{who}"],
                                            args=[self._per_minute, self.WINDOW_MS, secrets.token_hex(8)]))  # fmt: skip
        except Exception as exc:
            log.warning("media request rates: Redis unavailable (%s); this process's counts are used", exc)
            await self._fallback.check(who)
            return
        if wait_ms > 0:
            raise too_many(self._per_minute, who, wait_ms / 1000)

    async def close(self) -> None:
        await self._fallback.close()
        await self._redis.aclose()
