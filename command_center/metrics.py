"""The instruments updated where things happen: histograms of latencies and a few counters of the edge.

One ``Metrics`` per app, with its own ``CollectorRegistry`` (no module globals: two apps in one test process
must not share series). Everything that is a level rather than an event (units by status, screens, sessions,
breakers, pending positions) and the counters domain objects keep as plain integers are read when
``/metrics`` is scraped (``command_center.metrics_state``), so the hot paths pay for no instrument at all.

Names follow Prometheus conventions: prefix ``cc_``, base units (seconds, bytes), ``_total`` on counters;
labels are bounded sets (status, role, agency id, reason), never a unit, user or query id.

Each server process serves its own ``/metrics``; with several behind a proxy, Prometheus scrapes each
process directly (its ``cluster.node_url``) and sums across them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Telemetry answered (validation, live view, durable write): milliseconds normally, seconds when the
#: database is behind.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: A position's way from arrival to the frame screens receive: frames go out 10 times a second.
SCREEN_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
#: Asset-query feedback: the promise is complete feedback within 30 s.
FEEDBACK_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 45.0, 60.0, 120.0)
#: The event loop's lateness: anything past 100 ms is felt by every screen and unit.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

LOGIN_FAILURE_REASONS = ("wrong_credentials", "throttled", "busy")


class LoopHistogram(Collector):
    """A histogram observed from the event loop's thread only: a bisect and two additions, no lock.

    prometheus-client's ``Histogram.observe`` takes a lock and walks every bucket (about 4 µs here); this one
    is observed once per telemetry batch and once per unit in every screen frame, where that adds up (0.8 µs).
    Rendered with the same name, buckets (``le``), ``_count`` and ``_sum`` at scrape time.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name, self._documentation = name, documentation
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # per bucket, not cumulative; the last one is +Inf
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # bucket i holds bounds[i-1] < value <= bounds[i]
        self._sum += value

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[Metric]:
        cumulative, total = [], 0
        for bound, count in zip((*(str(b) for b in self._bounds), "+Inf"), self._counts, strict=True):
            total += count
            cumulative.append((bound, total))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=cumulative, sum_value=self._sum)


class Metrics:
    """The event-driven instruments of one app, and the registry ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.ack_seconds = LoopHistogram(
            "cc_telemetry_ack_seconds",
            "Time from a telemetry batch's arrival to its answer (validated, shown live, stored).",
            ACK_BUCKETS,
            reg,
        )
        self.unit_to_screen_seconds = LoopHistogram(
            "cc_unit_to_screen_seconds",
            "Time from a position's arrival to the frame that carries it to the screens of its court.",
            SCREEN_BUCKETS,
            reg,
        )
        self.feedback_seconds = LoopHistogram(
            "cc_query_feedback_seconds",
            "Time from an asset query's start to its completion (every agency answered or timed out).",
            FEEDBACK_BUCKETS,
            reg,
        )
        self.loop_lag_seconds = LoopHistogram(
            "cc_event_loop_lag_seconds",
            "How much later than asked the event loop woke a sleeping probe (its time busy with other work).",
            LAG_BUCKETS,
            reg,
        )
        self.login_failures = Counter(
            "cc_login_failures",
            "Logins refused: wrong_credentials (or disabled account), throttled (429), busy (503).",
            ["reason"],
            registry=reg,
        )
        for reason in LOGIN_FAILURE_REASONS:  # every series exists from the start (rate() needs a zero)
            self.login_failures.labels(reason)
