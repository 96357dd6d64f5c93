"""Everything the process holds per agency: the HTTP client session, one adapter per kind, and per
agency the concurrency limit and circuit breaker. Shared by the query broker and the follow-up
dispatcher, so a freeze and a query to the same bank count against the same limit and breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from core.errors import NotFound, ServiceUnavailable
from query_control.adapters.http import build_adapters
from query_control.adapters.port import AgencyAdapter
from query_control.agencies import AgencyConfig, AgencyKind
from query_control.breaker import CircuitBreaker


class AgencyGateway:
    def __init__(self, agencies: Sequence[AgencyConfig], *, adapters: dict[AgencyKind, AgencyAdapter] | None = None):
        self.agencies = {a.id: a for a in agencies}
        self._given_adapters = adapters
        self._adapters: dict[AgencyKind, AgencyAdapter] = {}
        self._session: aiohttp.ClientSession | None = None
        self.limits = {a.id: asyncio.Semaphore(a.concurrency) for a in agencies}
        self.breakers = {a.id: CircuitBreaker(a.breaker_failures, a.breaker_reset_seconds) for a in agencies}

    async def start(self) -> None:
        # Per-agency semaphores bound concurrency; the pool itself is unbounded per host so it never adds a queue.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        self._adapters = self._given_adapters or build_adapters(self._session)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def agency(self, agency_id: str) -> AgencyConfig:
        try:
            return self.agencies[agency_id]
        except KeyError:
            raise NotFound(f"agency {agency_id} is not configured") from None

    def adapter(self, kind: AgencyKind) -> AgencyAdapter:
        if not self._adapters:
            raise ServiceUnavailable("agency gateway is not started")
        return self._adapters[kind]

    def breaker_states(self) -> dict[str, str]:
        return {agency_id: b.state.value for agency_id, b in self.breakers.items()}
