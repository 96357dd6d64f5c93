"""Observability: Prometheus metrics, and the 运维 overview for operators without Grafana.

``/metrics`` answers only with a credential: an administrator's session token, or the scrape token of
``observability.metrics_token`` (``Authorization: Bearer …``). Each server process answers for itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from command_center.api.registry import Registry, json_response
from command_center.auth import Access, current_user
from command_center.keys import METRICS, PROCESSES, SETTINGS, STATE, STORE, VERIFIER
from core.errors import Forbidden
from courts.visibility import oversees_every_court

log = logging.getLogger(__name__)
api = Registry()
PROCESSES_TIMEOUT = 2.0  # seconds the cluster's list may take (Redis) before the page says it is unknown

METRICS_READERS = frozenset({Access.ADMIN, Access.SCRAPER})
OPS_READERS = frozenset({Access.SUPERVISOR, Access.ADMIN})
EVERY_COURT_ONLY = "it is for administrators and supervisors who oversee every court"


async def _require_every_court(request: web.Request, what: str) -> None:
    """``Forbidden`` unless the caller oversees every court (``what`` says why the route is process-wide)."""
    if not await oversees_every_court(request.app[STORE], current_user(request)):
        raise Forbidden(f"{what}; {EVERY_COURT_ONLY}")


@api.route("GET", "/metrics", summary="Prometheus metrics of this process (text exposition format)",
           tag="system", access=METRICS_READERS)  # fmt: skip
async def metrics(request: web.Request) -> web.StreamResponse:
    await request.app[STATE].probe()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class OpsOverviewOut(BaseModel):
    node: dict[str, Any]
    units: dict[str, int]
    positions: dict[str, int]
    pending_positions: int
    screens: dict[str, int]
    media: dict[str, Any]
    agencies: list[dict[str, Any]]
    store_up: bool
    bus_up: bool
    disk: dict[str, Any]
    #: Every process of the cluster (this one alone on the memory bus), live or stale; None if Redis is away.
    processes: list[dict[str, Any]] | None
    #: Recorded segments re-hashed against the audit chain: totals since start and the last pass.
    verifications: dict[str, Any]


@api.route("GET", "/api/ops/overview", summary="运维: this process, units, screens, media, agencies, dependencies",
           tag="system", access=OPS_READERS, response=OpsOverviewOut, errors=(Forbidden,))  # fmt: skip
async def ops_overview(request: web.Request) -> web.StreamResponse:
    """The same readings as /metrics, as one JSON document for the 运维 page (this process's view), with the
    list of every process of the cluster and what each leads.

    Every figure here is the process's, across every court it serves (units, screens, media sessions, agencies);
    none can be narrowed to a court's share, so only those who oversee every court read it: administrators and
    the supervisors of the top court. A lower court's supervisor is refused (403) rather than shown the courts
    above and beside it."""
    await _require_every_court(request, "the 运维 overview shows this process's figures for every court")
    state = request.app[STATE]
    probes = await state.probe()
    try:
        listed = await asyncio.wait_for(request.app[PROCESSES].list(), PROCESSES_TIMEOUT)
        processes: list[dict[str, Any]] | None = [view.as_dict() for view in listed]
    except Exception as exc:  # Redis away: the page says the list is unknown rather than failing
        log.warning("ops: cannot list the processes: %s", exc)
        processes = None
    settings = request.app[SETTINGS]
    warn_below = settings.observability.disk_warning_percent
    free, size = probes.disk_free_bytes, probes.disk_size_bytes
    free_percent = None if not size or free is None else round(100 * free / size, 1)
    return json_response(
        OpsOverviewOut(
            node={
                "id": state.node_id(),
                "leader": state.leader(),
                "leader_node": await state.leader_node(),
                "started": state.started,
                "shared": settings.bus.url != "memory://",
            },
            units=state.units(),
            positions=state.positions(),
            pending_positions=state.pending_positions(),
            screens=state.screens(),
            media=state.media(),
            agencies=state.agencies(),
            store_up=probes.store_up,
            bus_up=probes.bus_up,
            disk={
                "free_bytes": free,
                "size_bytes": size,
                "free_percent": free_percent,
                "warn_below_percent": warn_below,
                "warning": free_percent is not None and free_percent < warn_below,
            },
            processes=processes,
            verifications=state.verifications(),
        )
    )


class VerificationOut(BaseModel):
    finished: float
    counts: dict[str, int]
    problems: list[str]


@api.route("POST", "/api/ops/verify-recordings", summary="Re-read every recorded segment on this process's disk "
           "and check it against the audit chain now", tag="system", access=OPS_READERS,
           response=VerificationOut, errors=(Forbidden,))  # fmt: skip
async def verify_recordings(request: web.Request) -> web.StreamResponse:
    """On demand what the leader does every ``media.verify_interval_seconds``; counted in the same series.

    Its answer names the files of every court, so, like the overview, only for those who oversee every court;
    a call while a pass runs gets that pass's result (``SegmentVerifier.run``), so calls do not queue passes."""
    await _require_every_court(request, "the recordings' check names the files of every court")
    run = await request.app[VERIFIER].run()
    return json_response(VerificationOut(finished=run.finished, counts=run.counts, problems=run.problems))
