"""What this process is doing, read from the objects that already know it, when someone asks.

Two readers share it: ``/metrics`` (rendered for Prometheus by ``StateCollector``) and the 运维 page's JSON
(``GET /api/ops/overview``). Nothing here runs per message: levels (units by status, screens, sessions,
breakers, pending positions) and the plain integers the domain objects count are read at scrape time. The
dependency probes (database, bus, the recordings' disk) are the only I/O, done by ``probe`` before a read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cluster.factory import node_identity
from cluster.port import LEADER
from cluster.processes import ProcessRecord, roles_of
from command_center.keys import (
    BROKER,
    BUS,
    CLUSTER,
    GATEWAY,
    HUB,
    IDLE_UNIT_SOCKETS,
    MEDIA,
    SETTINGS,
    STORE,
    TRACKER,
    VERIFIER,
    WRITER,
)
from persistence.models import Status
from query_control.breaker import BreakerState

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0  # seconds a dependency may take to answer a probe before it counts as down
MEDIA_ROLES = ("unit", "viewer", "talkback", "participant")


@dataclass
class Probes:
    """The last answers of the dependencies (refreshed by ``StateReader.probe``)."""

    store_up: bool = False
    bus_up: bool = False
    disk_free_bytes: int | None = None
    disk_size_bytes: int | None = None


@dataclass
class StateReader:
    """Reads the running app; ``probe`` first refreshes what needs I/O."""

    app: web.Application
    started: float = field(default_factory=time.time)
    probes: Probes = field(default_factory=Probes)

    async def probe(self) -> Probes:
        store, bus = self.app.get(STORE), self.app.get(BUS)
        store_up, bus_up, disk = await asyncio.gather(
            _answers("store", None if store is None else store.health),
            _answers("bus", None if bus is None else bus.health),
            asyncio.to_thread(_disk_usage, self.recordings),
        )
        self.probes = Probes(store_up, bus_up, *(disk or (None, None)))
        return self.probes

    @property
    def recordings(self) -> Path:
        return Path(self.app[SETTINGS].data_dir) / "recordings"

    def node_id(self) -> str:
        cluster = self.app.get(CLUSTER)
        return "local" if cluster is None else cluster.node_id

    def leader(self) -> bool:
        cluster = self.app.get(CLUSTER)
        return cluster is not None and cluster.holds(LEADER)

    async def leader_node(self) -> str | None:
        """Which process leads (runs the sweepers), as the coordinator knows it; None if nobody or unknown."""
        cluster = self.app.get(CLUSTER)
        if cluster is None:
            return None
        try:
            return await asyncio.wait_for(cluster.holder(LEADER), PROBE_TIMEOUT)
        except Exception as exc:  # Redis away: the page says unknown rather than failing
            log.warning("ops: cannot tell the leader: %s", exc)
            return None

    def units(self) -> dict[str, int]:
        tracker = self.app.get(TRACKER)
        counts = {s.value: 0 for s in Status}
        if tracker is not None:
            counts.update({s.value: n for s, n in tracker.status_counts().items()})
        return counts

    def positions(self) -> dict[str, int]:
        tracker = self.app.get(TRACKER)
        if tracker is None:
            return {"stored": 0, "duplicate": 0, "invalid": 0, "overloaded": 0}
        c = tracker.position_counts
        return {"stored": c.stored, "duplicate": c.duplicate, "invalid": c.invalid, "overloaded": c.overloaded}

    def pending_positions(self) -> int:
        writer = self.app.get(WRITER)
        return 0 if writer is None else writer.pending

    def screens(self) -> dict[str, int]:
        hub = self.app.get(HUB)
        if hub is None:
            return {"connected": 0, "too_slow": 0, "dropped_messages": 0}
        return {"connected": hub.screens, "too_slow": hub.too_slow_screens, "dropped_messages": hub.dropped_messages()}

    def media(self) -> dict[str, Any]:
        hub = self.app.get(MEDIA)
        if hub is None:
            nothing = {"viewer": 0, "recorder": 0}
            return {"sessions": dict.fromkeys(MEDIA_ROLES, 0), "frames_received": 0, "frames_forwarded": 0,
                    "frames_dropped": nothing, "recorded_bytes": 0, "segments_sealed": 0}  # fmt: skip
        c = hub.counts
        return {
            "sessions": hub.session_counts(),
            "frames_received": c.frames_received,
            "frames_forwarded": c.frames_forwarded,
            "frames_dropped": hub.frames_dropped(),
            "recorded_bytes": c.recorded_bytes,
            "segments_sealed": c.segments_sealed,
        }

    def agencies(self) -> list[dict[str, Any]]:
        gateway = self.app.get(GATEWAY)
        if gateway is None:
            return []
        states = gateway.breaker_states()
        return [{"id": a.id, "name": a.name, "breaker": states[a.id]} for a in gateway.agencies.values()]

    def verifications(self) -> dict[str, Any]:
        """Recorded segments re-hashed against the audit chain: totals since start, and the last pass."""
        verifier = self.app.get(VERIFIER)
        if verifier is None:
            return {"totals": {"ok": 0, "mismatch": 0, "missing": 0}, "last": None}
        last = verifier.last
        return {"totals": dict(verifier.totals),
                "last": None if last is None else {"finished": last.finished, "counts": last.counts,
                                                   "problems": last.problems}}  # fmt: skip

    def process_record(self) -> ProcessRecord:
        """This process as the cluster's list shows it (``cluster.processes``): what it leads and holds."""
        cluster = self.app.get(CLUSTER)
        node_id, url = node_identity(self.app[SETTINGS])
        sessions = self.media()["sessions"]
        sockets = self.app.get(IDLE_UNIT_SOCKETS)
        return ProcessRecord(
            id=node_id if cluster is None else cluster.node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started=self.started,
            url=url,
            roles=roles_of([] if cluster is None else cluster.held()),
            units=(0 if sockets is None else len(sockets)) + sessions["unit"],
            screens=self.screens()["connected"],
            media=sessions,
        )

    def query_jobs(self) -> dict[tuple[str, str], int]:
        broker = self.app.get(BROKER)
        return {} if broker is None else dict(broker.ended_jobs)


class StateCollector(Collector):
    """Renders ``StateReader`` for Prometheus at each scrape (call ``reader.probe()`` just before)."""

    def __init__(self, reader: StateReader) -> None:
        self._reader = reader

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the app is not running yet

    def collect(self) -> Iterator[Metric]:
        yield from _collect(self._reader)


def _collect(r: StateReader) -> Iterable[Metric]:
    node = GaugeMetricFamily("cc_node", "This server process (1), by node id; leader 1 when it holds leadership.",
                             labels=["node_id", "leader"])  # fmt: skip
    node.add_metric([r.node_id(), "1" if r.leader() else "0"], 1)
    yield node
    yield _gauge("cc_leader", "1 while this process holds leadership (runs the sweepers), else 0.", int(r.leader()))
    units = GaugeMetricFamily("cc_units", "Field units this process knows, by displayed status.", labels=["status"])
    for status, n in r.units().items():
        units.add_metric([status], n)
    yield units
    positions = CounterMetricFamily(
        "cc_positions", "Positions received: stored, duplicate (sent again), invalid or overloaded (refused).",
        labels=["outcome"],
    )  # fmt: skip
    for outcome, n in r.positions().items():
        positions.add_metric([outcome], n)
    yield positions
    yield _gauge("cc_positions_pending", "Positions accepted and not yet written to the database.",
                 r.pending_positions())  # fmt: skip
    screens = r.screens()
    yield _gauge(
        "cc_screens_connected", "Screens (wall displays, consoles) connected by WebSocket.", screens["connected"]
    )
    yield _counter("cc_screen_messages_dropped", "Messages thrown away for screens that fell behind.",
                   screens["dropped_messages"])  # fmt: skip
    yield _counter("cc_screens_too_slow", "Screens disconnected for falling behind (they resume).", screens["too_slow"])
    media = r.media()
    sessions = GaugeMetricFamily("cc_media_sessions", "Media sessions held by this process, by role.", labels=["role"])
    for role, n in media["sessions"].items():
        sessions.add_metric([role], n)
    yield sessions
    yield _counter("cc_media_frames_received", "Encoded frames received from units.", media["frames_received"])
    yield _counter("cc_media_frames_forwarded", "Encoded frames forwarded to viewers (one per viewer).",
                   media["frames_forwarded"])  # fmt: skip
    dropped = CounterMetricFamily("cc_media_frames_dropped", "Frames lost: skipped by viewers that fell behind, or "
                                  "by recorders that could not keep up.", labels=["where"])  # fmt: skip
    for where, n in media["frames_dropped"].items():
        dropped.add_metric([where], n)
    yield dropped
    yield _counter(
        "cc_recording_bytes", "Evidence bytes written in finished recording segments.", media["recorded_bytes"]
    )
    yield _counter("cc_recording_segments_sealed", "Recording segments hashed into the audit chain.",
                   media["segments_sealed"])  # fmt: skip
    verified = CounterMetricFamily("cc_recording_segment_verifications", "Recorded segments re-read and checked "
                                   "against the audit chain's SHA-256: ok, mismatch (altered) or missing.",
                                   labels=["result"])  # fmt: skip
    for result, n in r.verifications()["totals"].items():
        verified.add_metric([result], n)
    yield verified
    jobs = CounterMetricFamily("cc_query_jobs", "Asset-query jobs ended by this process, by agency and final status.",
                               labels=["agency", "status"])  # fmt: skip
    for (agency, status), n in sorted(r.query_jobs().items()):
        jobs.add_metric([agency, status], n)
    yield jobs
    breakers = GaugeMetricFamily("cc_agency_breaker_state", "Circuit breaker per agency: 1 for its current state.",
                                 labels=["agency", "state"])  # fmt: skip
    for row in r.agencies():
        for breaker in BreakerState:
            breakers.add_metric([row["id"], breaker.value], 1 if row["breaker"] == breaker.value else 0)
    yield breakers
    probes = r.probes
    yield _gauge("cc_store_up", "1 if the database answered the last probe within 2 s.", int(probes.store_up))
    yield _gauge("cc_bus_up", "1 if the event bus (Redis, or in-process) answered the last probe.", int(probes.bus_up))
    if probes.disk_free_bytes is not None and probes.disk_size_bytes is not None:
        yield _gauge("cc_recording_disk_free_bytes", "Free space on the recordings' disk.", probes.disk_free_bytes)
        yield _gauge("cc_recording_disk_size_bytes", "Size of the recordings' disk.", probes.disk_size_bytes)
    yield _gauge("cc_process_start_time_seconds", "When this server process started (Unix time).", r.started)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


async def _answers(name: str, check: Any) -> bool:
    if check is None:
        return False
    try:
        await asyncio.wait_for(check(), PROBE_TIMEOUT)
        return True
    except Exception as exc:  # a probe reports any failure instead of raising it
        log.warning("metrics: %s did not answer its probe: %s", name, exc)
        return False


def _disk_usage(path: Path) -> tuple[int, int] | None:
    """Free and total bytes of the disk holding ``path`` (its nearest existing parent until it is made)."""
    for candidate in (path, *path.parents):
        if os.path.exists(candidate):
            usage = shutil.disk_usage(candidate)
            return usage.free, usage.total
    return None
