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

from prometheus_client import CollectorRegistry, Counter, Histogram

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


class Metrics:
    """The event-driven instruments of one app, and the registry ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.ack_seconds = Histogram(
            "cc_telemetry_ack_seconds",
            "Time from a telemetry batch's arrival to its answer (validated, shown live, stored).",
            buckets=ACK_BUCKETS,
            registry=reg,
        )
        self.unit_to_screen_seconds = Histogram(
            "cc_unit_to_screen_seconds",
            "Time from a position's arrival to the frame that carries it to the screens of its court.",
            buckets=SCREEN_BUCKETS,
            registry=reg,
        )
        self.feedback_seconds = Histogram(
            "cc_query_feedback_seconds",
            "Time from an asset query's start to its completion (every agency answered or timed out).",
            buckets=FEEDBACK_BUCKETS,
            registry=reg,
        )
        self.loop_lag_seconds = Histogram(
            "cc_event_loop_lag_seconds",
            "How much later than asked the event loop woke a sleeping probe (its time busy with other work).",
            buckets=LAG_BUCKETS,
            registry=reg,
        )
        self.login_failures = Counter(
            "cc_login_failures",
            "Logins refused: wrong_credentials (or disabled account), throttled (429), busy (503).",
            ["reason"],
            registry=reg,
        )
        for reason in LOGIN_FAILURE_REASONS:  # every series exists from the start (rate() needs a zero)
            self.login_failures.labels(reason)
