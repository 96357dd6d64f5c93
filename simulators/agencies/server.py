"""One simulated agency: a real aiohttp server speaking the agency protocol with configurable faults.

Idempotency as a real agency would do it: the first request with an ``Idempotency-Key`` is processed (in
a task of its own, so it completes even when the caller goes away) and its answer kept; a later request
with the same key gets that answer again, marked ``Idempotent-Replayed: true``, and is counted as a
replay, never as a new request. Injected 503s happen before any processing, as an overloaded gateway's
would. ``stats`` lets tests assert what the agency really saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from query_control.agencies import AgencyConfig, SimulatorProfile
from simulators.agencies.data import holdings

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


@dataclass
class SimulatorStats:
    new_requests: Counter[str] = field(default_factory=Counter)  # Idempotency-Key → requests processed
    replays: Counter[str] = field(default_factory=Counter)  # Idempotency-Key → answered from the kept result
    injected: Counter[str] = field(default_factory=Counter)  # fault → times played
    followups_applied: list[tuple[str, str, str]] = field(default_factory=list)  # (key, action, asset_ref)
    in_flight: int = 0
    max_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"new_requests": dict(self.new_requests), "replays": dict(self.replays), "injected": dict(self.injected),
                "followups_applied": self.followups_applied, "max_in_flight": self.max_in_flight}  # fmt: skip


@dataclass
class _AssetState:
    frozen_cents: int = 0
    frozen: bool = False
    renewals: int = 0
    deducted_cents: int = 0


class AgencySimulator:
    def __init__(self, agency: AgencyConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.agency = agency
        self.profile: SimulatorProfile = agency.simulator
        self.stats = SimulatorStats()
        self._host, self._port = host, port
        self._rng = random.Random(agency.simulator.seed or agency.id)
        self._results: dict[str, asyncio.Task[tuple[int, dict[str, Any]]]] = {}
        self._fingerprints: dict[str, str] = {}
        self._reserved: set[str] = set()  # admitted keys whose slot is taken but whose work has not started
        self._assets: dict[str, _AssetState] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def asset_state(self, ref: str) -> _AssetState:
        return self._assets.setdefault(ref, _AssetState())

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/query", self._query)
        app.router.add_post("/v1/followups", self._followup)
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_put("/_sim/profile", self._set_profile)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        for task in self._results.values():
            task.cancel()
        for task in self._results.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # protocol -----------------------------------------------------------------------------------------
    async def _admit(self, request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.agency.api_key}":
            return _error(401, "unauthorised", "unknown or missing credential")
        key = request.headers.get("Idempotency-Key", "")
        if not key or len(key) > 128:
            return _error(400, "bad_request", "Idempotency-Key header required (1…128 characters)")
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "bad_request", "body is not JSON")
        if not isinstance(body, dict) or body.get("request_id") != key:
            return _error(400, "bad_request", "body must be an object whose request_id equals the Idempotency-Key")
        subject = body.get("subject")
        if not isinstance(subject, dict) or not isinstance(subject.get("identifier"), str):
            return _error(400, "bad_request", "subject.identifier required")
        if self.profile.outage:
            self.stats.injected["outage"] += 1
            return _error(503, "unavailable", "agency system under maintenance")
        if self.stats.in_flight >= self.agency.concurrency and key not in self._results:
            self.stats.injected["throttled"] += 1
            return _error(429, "throttled", f"at most {self.agency.concurrency} requests at a time")
        if self.profile.error_rate and self._rng.random() < self.profile.error_rate:
            self.stats.injected["error"] += 1
            return _error(503, "unavailable", "temporarily overloaded")
        if key not in self._results:
            # Take the slot now, in the same step as the check: two requests admitted before either one's
            # work began would otherwise both see a free slot.
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            self._reserved.add(key)
        return key, body

    async def _idempotent(self, key: str, body: dict[str, Any], work: Any) -> tuple[int, dict[str, Any], bool]:
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        reserved = key in self._reserved
        self._reserved.discard(key)
        task = self._results.get(key)
        if task is not None:
            if reserved:  # a twin request started the work first: give this one's slot back
                self.stats.in_flight -= 1
            if self._fingerprints[key] != fingerprint:
                return 409, {"code": "idempotency_mismatch", "message": "key reused with another body"}, False
            self.stats.replays[key] += 1
            status, answer = await asyncio.shield(task)
            return status, answer, True
        self.stats.new_requests[key] += 1
        self._fingerprints[key] = fingerprint
        task = self._results[key] = asyncio.create_task(
            self._holding_slot(work(key, body), reserved), name=f"sim:{self.agency.id}:{key}"
        )
        status, answer = await asyncio.shield(task)
        return status, answer, False

    async def _holding_slot(self, work: Any, reserved: bool) -> tuple[int, dict[str, Any]]:
        """Run the work; its concurrency slot (taken at admission) is freed when it ends."""
        try:
            result: tuple[int, dict[str, Any]] = await work
            return result
        finally:
            if reserved:
                self.stats.in_flight -= 1

    async def _latency(self, identifier: str) -> None:
        """Lognormal service time plus an occasional tail, drawn per (agency, party): asking about the same
        person again takes as long, so a benchmark's baseline meets the very same latencies."""
        p = self.profile
        digest = hashlib.sha256(f"{self.agency.id}|{identifier}|{p.seed}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        delay = p.latency_median_ms * math.exp(p.latency_sigma * rng.gauss(0.0, 1.0))
        if p.tail_probability and rng.random() < p.tail_probability:
            delay += p.tail_ms
        await asyncio.sleep(delay / 1000)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        key, body = admitted
        status, answer, replayed = await self._idempotent(key, body, self._answer_query)
        return await self._respond(request, status, answer, replayed)

    async def _answer_query(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        await self._latency(str(body["subject"]["identifier"]).upper())
        assets = holdings(self.agency, body["subject"]["identifier"].upper())
        return 200, {"request_id": key, "agency": self.agency.id, "status": "found" if assets else "none",
                     "assets": assets}  # fmt: skip

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        key, body = admitted
        status, answer, replayed = await self._idempotent(key, body, self._apply_followup)
        return await self._respond(request, status, answer, replayed)

    async def _apply_followup(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        await self._latency(str(body["subject"]["identifier"]).upper())
        action, ref, amount = body.get("action"), body.get("asset_ref"), body.get("amount_cents")
        if action not in self.agency.followups:
            return 422, {"code": "refused", "message": f"this agency does not accept {action!r}"}
        records = holdings(self.agency, body["subject"]["identifier"].upper())
        record = next((r for r in records if ref in r.values()), None)
        if record is None:
            return 422, {"code": "refused", "message": f"no asset {ref!r} of this party"}
        state = self.asset_state(str(ref))
        value = next((v for k, v in record.items() if k.endswith("_cents") and isinstance(v, int)), None)
        if action == "freeze":
            if state.frozen:
                return 422, {"code": "refused", "message": "already frozen"}
            state.frozen, state.frozen_cents = True, amount or value or 0
        elif action in ("renew", "unfreeze"):
            if not state.frozen:
                return 422, {"code": "refused", "message": "not frozen"}
            if action == "renew":
                state.renewals += 1
            else:
                state.frozen, state.frozen_cents = False, 0
        elif action == "deduct":
            available = (value or 0) - state.deducted_cents
            if not isinstance(amount, int) or amount <= 0 or amount > available:
                return 422, {"code": "refused", "message": f"deduct needs 0 < amount_cents <= {available}"}
            state.deducted_cents += amount
        self.stats.followups_applied.append((key, str(action), str(ref)))
        ref_no = f"{self.agency.id.upper()}-{len(self.stats.followups_applied):06d}"
        return 200, {"request_id": key, "status": "confirmed", "agency_ref": ref_no, "action": action,
                     "asset_ref": ref}  # fmt: skip

    async def _respond(
        self, request: web.Request, status: int, answer: dict[str, Any], replayed: bool
    ) -> web.StreamResponse:
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        data = json.dumps(answer, ensure_ascii=False).encode()
        if status == 200 and self.profile.malformed_rate and self._rng.random() < self.profile.malformed_rate:
            self.stats.injected["malformed"] += 1
            data = self._rng.choice([b"<html><body>502 Bad Gateway</body></html>", b'{"request_id": "',
                                     json.dumps({"request_id": answer.get("request_id"), "status": "found",
                                                 "assets": [{"oops": True}]}).encode()])  # fmt: skip
        drip = self.profile.drip_bytes_per_second
        if drip is None:
            return web.Response(body=data, status=status, content_type="application/json", headers=headers)
        self.stats.injected["drip"] += 1
        response = web.StreamResponse(status=status, headers={**headers, "Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        chunk = max(1, int(drip / 10))
        for start in range(0, len(data), chunk):
            await response.write(data[start : start + chunk])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    # control ------------------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"agency": self.agency.id, "outage": self.profile.outage})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def _set_profile(self, request: web.Request) -> web.Response:
        try:
            self.profile = SimulatorProfile.model_validate({**self.profile.model_dump(), **(await request.json())})
        except (ValueError, TypeError) as exc:
            return _error(400, "bad_request", str(exc))
        return web.json_response(self.profile.model_dump())


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class SimulatorFleet:
    """Every agency's simulator, started and closed together."""

    def __init__(self, agencies: list[AgencyConfig], *, host: str = "127.0.0.1", ports: dict[str, int] | None = None):
        self.simulators = {a.id: AgencySimulator(a, host=host, port=(ports or {}).get(a.id, 0)) for a in agencies}

    def __getitem__(self, agency_id: str) -> AgencySimulator:
        return self.simulators[agency_id]

    @property
    def endpoints(self) -> dict[str, str]:
        return {agency_id: sim.url for agency_id, sim in self.simulators.items()}

    async def start(self) -> None:
        try:
            for sim in self.simulators.values():
                await sim.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for sim in self.simulators.values():
            await sim.close()
