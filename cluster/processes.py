"""Which server processes make up the cluster, what each one leads, and whether it is still alive.

Each process writes its record (id, host, pid, start, the leases it holds, its connected units, screens and
media sessions) every ``cluster.heartbeat_seconds``; the 运维 page lists every record, live when renewed
within ``cluster.process_ttl_seconds`` and stale after. A process that stops cleanly removes its record; one
that is killed stays listed, marked stale, until forgotten (``FORGET_AFTER_S``). On the memory bus there is
one process and the list is that process.

The record and the live/stale rule are plain values (``ProcessRecord``, ``classify``); the two adapters only
store them: in this process (``LocalProcesses``) or in one Redis hash per namespace (``RedisProcesses``),
stamped with Redis's clock so hosts whose clocks differ still agree on who is stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

FORGET_AFTER_S = 3600.0  # a stale record (a process killed, never back) is dropped from the list after this


@dataclass(frozen=True)
class ProcessRecord:
    """What one server process says of itself at each heartbeat."""

    id: str
    host: str
    pid: int
    started: float  # Unix time
    url: str  # its direct address (forwarding, scraping)
    roles: dict[str, int] = field(default_factory=dict)  # lease kind -> how many it holds (leader, query, media …)
    units: int = 0  # units connected to it: telemetry sockets and media sessions
    screens: int = 0
    media: dict[str, int] = field(default_factory=dict)  # media sessions by role

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProcessRecord:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(id=str(data["id"]), host=str(data["host"]), pid=int(data["pid"]), started=float(data["started"]),
                   url=str(data["url"]), roles={str(k): int(v) for k, v in data.get("roles", {}).items()},
                   units=int(data.get("units", 0)), screens=int(data.get("screens", 0)),
                   media={str(k): int(v) for k, v in data.get("media", {}).items()})  # fmt: skip


@dataclass(frozen=True)
class ProcessView:
    """A record as the list shows it: when it was last renewed and whether that is recent enough."""

    record: ProcessRecord
    heartbeat: float  # Unix time of its last renewal (the registry's clock)
    age_seconds: float
    live: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.record) | {"heartbeat": self.heartbeat, "age_seconds": round(self.age_seconds, 3),
                                      "state": "live" if self.live else "stale",
                                      "leader": self.record.roles.get("leader", 0) > 0}  # fmt: skip


def roles_of(leases: Iterable[str]) -> dict[str, int]:
    """Lease names to what the process leads, counted by kind: ``leader``, ``query:17`` and ``query:18`` give
    ``{"leader": 1, "query": 2}`` (names carry ids; the page shows the kinds)."""
    roles: dict[str, int] = {}
    for name in leases:
        kind = name.split(":", 1)[0]
        roles[kind] = roles.get(kind, 0) + 1
    return dict(sorted(roles.items()))


def classify(beats: dict[str, tuple[ProcessRecord, float]], now: float, ttl: float) -> list[ProcessView]:
    """Every record, live if renewed within ``ttl`` seconds of ``now``, stale otherwise; live ones first."""
    views = [ProcessView(record, beat, max(0.0, now - beat), now - beat <= ttl) for record, beat in beats.values()]
    return sorted(views, key=lambda v: (not v.live, v.record.id))


class Processes(Protocol):
    async def beat(self, record: ProcessRecord) -> None:
        """Write (or renew) this process's record."""

    async def leave(self, node_id: str) -> None:
        """Remove this process's record (a clean stop)."""

    async def list(self) -> list[ProcessView]:
        """Every known process, live and stale."""

    async def close(self) -> None: ...


class LocalProcesses:
    """One process: the list is its own last record."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._beats: dict[str, tuple[ProcessRecord, float]] = {}

    async def beat(self, record: ProcessRecord) -> None:
        self._beats[record.id] = (record, time.time())

    async def leave(self, node_id: str) -> None:
        self._beats.pop(node_id, None)

    async def list(self) -> list[ProcessView]:
        return classify(self._beats, time.time(), self._ttl)

    async def close(self) -> None:
        self._beats.clear()


# KEYS: records hash, heartbeats hash. ARGV: node id, record JSON. Stamped with Redis's clock (seconds).
_BEAT = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
return 0
"""


class RedisProcesses:
    """Every process's record in ``<ns>:processes`` and its last heartbeat in ``<ns>:process-beats``."""

    def __init__(self, url: str, *, namespace: str, ttl_seconds: float) -> None:
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._keys = [f"{namespace}:processes", f"{namespace}:process-beats"]
        self._ttl = ttl_seconds
        self._beat: Any = self._redis.register_script(_BEAT)

    async def beat(self, record: ProcessRecord) -> None:
        await self._beat(keys=self._keys, args=[record.id, record.to_json()])

    async def leave(self, node_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys[0], node_id)
            pipe.hdel(self._keys[1], node_id)
            await pipe.execute()

    async def list(self) -> list[ProcessView]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._keys[0])
            pipe.hgetall(self._keys[1])
            pipe.time()
            records, beats, (seconds, micros) = await pipe.execute()
        now = int(seconds) + int(micros) / 1e6
        known, forgotten = {}, []
        for node_id, raw in records.items():
            beat = float(beats.get(node_id, 0.0))
            if now - beat > FORGET_AFTER_S:
                forgotten.append(node_id)
                continue
            known[node_id] = (ProcessRecord.from_json(raw), beat)
        if forgotten:
            await self._redis.hdel(self._keys[0], *forgotten)
            await self._redis.hdel(self._keys[1], *forgotten)
        return classify(known, now, self._ttl)

    async def close(self) -> None:
        await self._redis.aclose()
