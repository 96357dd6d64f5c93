"""Leases in Redis: a script that takes a free one (with a new epoch, the fencing token) or extends our own,
compare-and-delete to give it up. One background loop renews every held lease and announces the node a
third of a lease period apart, so a process that stops (or is killed) loses its leases within
``lease_seconds``. The epoch script reads Redis's clock (``TIME``) before writing, which needs Redis 5 or
later (scripts replicated by their effects).

A lease whose renewal has not succeeded for a whole period is no longer held, even if Redis cannot be
reached to say so: a process cut off from Redis stops its once-only work, because a peer may take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

# Each grant gets an epoch (a fencing token, ``core.fencing``) minted from one counter per namespace: the
# counter + 1 or Redis's clock in microseconds, whichever is higher, so epochs keep rising when Redis comes
# back without its data. The grant's epoch is kept beside the lease (same lifetime) and survives renewals.
_MINT = """
local function mint()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local e = math.max(tonumber(redis.call('GET', KEYS[3]) or '0') + 1, now)
  redis.call('SET', KEYS[3], string.format('%.0f', e))
  return e
end
"""

# KEYS: lease key, its epoch key, the epoch counter. ARGV: node id, lease ms. Take a free lease (a new
# epoch) or extend our own (the same epoch); the grant's epoch, or 0 if another node holds it.
_CLAIM = (
    _MINT
    + """
local holder = redis.call('GET', KEYS[1])
local e
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  e = mint()
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  e = tonumber(redis.call('GET', KEYS[2]) or '0')
  if e == 0 then e = mint() end
else
  return 0
end
redis.call('SET', KEYS[2], string.format('%.0f', e), 'PX', ARGV[2])
return e
"""
)

# KEYS: lease key, its epoch key, the epoch counter. ARGV: node id, lease ms. Hold it whoever held it: a new grant.
_TAKE = (
    _MINT
    + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local e = mint()
redis.call('SET', KEYS[2], string.format('%.0f', e), 'PX', ARGV[2])
return e
"""
)

# KEYS: lease key, its epoch key. ARGV: node id. Delete the lease only if we hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisCoordinator:
    shared = True

    def __init__(self, url: str, *, node_id: str, node_url: str, lease_seconds: float, namespace: str = "cc") -> None:
        self.node_id = node_id
        self._url = url
        self._node_url = node_url
        self._lease_ms = int(lease_seconds * 1000)
        self._ns = namespace
        self._redis: aioredis.Redis | None = None
        self._claim_script: Any = None
        self._release_script: Any = None
        self._take_script: Any = None
        self._epochs: dict[str, int] = {}  # held lease -> the epoch of our grant
        self._renewed: dict[str, float] = {}  # held lease -> monotonic time of its last successful renewal
        self._wanted: set[str] = set()
        self._loop: asyncio.Task[None] | None = None

    def _key(self, name: str) -> str:
        return f"{self._ns}:lease:{name}"

    def _keys(self, name: str) -> list[str]:
        """The lease, its grant's epoch, the namespace's epoch counter."""
        return [self._key(name), f"{self._ns}:lease-epoch:{name}", f"{self._ns}:lease-epochs"]

    def _node_key(self, node_id: str) -> str:
        return f"{self._ns}:node:{node_id}"

    async def start(self) -> None:
        self._redis = aioredis.from_url(self._url, decode_responses=True, health_check_interval=15)
        self._claim_script = self._redis.register_script(_CLAIM)
        self._release_script = self._redis.register_script(_RELEASE)
        self._take_script = self._redis.register_script(_TAKE)
        await self._announce()
        self._loop = asyncio.create_task(self._renew_forever(), name="cluster-leases")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._redis is not None:
            with contextlib.suppress(Exception):  # best effort: leases lapse on their own otherwise
                for name in list(self._renewed):
                    await self._release_script(keys=self._keys(name)[:2], args=[self.node_id])
                await self._redis.delete(self._node_key(self.node_id))
            await self._redis.aclose()
            self._redis = None
        self._renewed.clear()
        self._epochs.clear()
        self._wanted.clear()

    # leases -------------------------------------------------------------------------------------------
    async def claim(self, name: str) -> bool:
        started = time.monotonic()
        epoch = int(await self._claim_script(keys=self._keys(name), args=[self.node_id, self._lease_ms]))
        if epoch:
            self._renewed[name] = started
            self._epochs[name] = epoch
            return True
        self._renewed.pop(name, None)
        self._epochs.pop(name, None)
        return False

    async def release(self, name: str) -> None:
        self._wanted.discard(name)
        self._epochs.pop(name, None)
        if self._renewed.pop(name, None) is not None:
            await self._release_script(keys=self._keys(name)[:2], args=[self.node_id])

    async def take(self, name: str) -> None:
        started = time.monotonic()
        epoch = int(await self._take_script(keys=self._keys(name), args=[self.node_id, self._lease_ms]))
        self._renewed[name] = started
        self._epochs[name] = epoch

    def epoch(self, name: str) -> int | None:
        return self._epochs.get(name) if name in self._renewed else None

    def want(self, name: str) -> None:
        self._wanted.add(name)

    def holds(self, name: str) -> bool:
        renewed = self._renewed.get(name)
        return renewed is not None and time.monotonic() - renewed < self._lease_ms / 1000

    def held(self) -> list[str]:
        return sorted(name for name in self._renewed if self.holds(name))

    async def holder(self, name: str) -> str | None:
        value = await self._client.get(self._key(name))
        return None if value is None else str(value)

    async def holders(self, names: list[str]) -> list[str | None]:
        if not names:
            return []
        values = await self._client.mget([self._key(name) for name in names])
        return [None if value is None else str(value) for value in values]

    async def node_url(self, node_id: str) -> str | None:
        value = await self._client.get(self._node_key(node_id))
        return None if value is None else str(value)

    # renewal ------------------------------------------------------------------------------------------
    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("coordinator is not started")
        return self._redis

    async def _announce(self) -> None:
        await self._client.set(self._node_key(self.node_id), self._node_url, px=self._lease_ms)

    async def _renew_forever(self) -> None:
        period = self._lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                await self._announce()
                for name in list(self._renewed.keys() | self._wanted):
                    had = name in self._renewed
                    if not await self.claim(name) and had:
                        log.warning("cluster: lease %s was taken over by another node", name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis is away: leases lapse on their own (see the module docstring)
                log.warning("cluster: renewing leases failed (%s)", exc)
