"""Prometheus helpers shared by the services; each service defines its own metrics in its own
``metrics.py`` (docs/design.md section 8), on the default registry unless a test passes another."""

from __future__ import annotations

import logging

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

# Latency buckets from 1 ms to 30 s: fine enough for the relay's < 5 ms target and the
# gateway's < 50 ms target, wide enough for Kaltura API calls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The one metric of the common runtime (shared.loopwatch), in every asyncio service's registry;
# the scrape target tells the services apart.
EVENT_LOOP_LAG = Histogram(
    "reachlive_event_loop_lag_seconds",
    "how late a timer due every 100 ms fired (the loop's longest stall)",
    buckets=LATENCY_BUCKETS,
)

# Redis reachability (shared.redis_health), the same three series in every service: defined once
# here, as the loop lag above, because every service reports them alike (one definition, one help
# text). The ``service`` label is the issue's; a scrape that sets its own ``service`` target label
# (compose, the PodMonitor) keeps that one, equal in value, and stores this as ``exported_service``.
REDIS_UP = Gauge("reachlive_redis_up", "1 while Redis answers this process, 0 during an outage", ["service"])
REDIS_OUTAGE_SECONDS = Gauge(
    "reachlive_redis_outage_seconds",
    "seconds the current Redis outage has lasted for this process (0 while Redis answers)",
    ["service"],
)
REDIS_OUTAGES = Counter(
    "reachlive_redis_outages_total", "Redis outages this process saw (one per loss, however long)", ["service"]
)

# The per-event log (shared/journal.py), written by every service: an entry lost to a Redis error
# or timeout is counted here and the service goes on (the scrape target tells the services apart).
JOURNAL_WRITE_FAILURES = Counter(
    "reachlive_journal_write_failures_total",
    "per-event log entries (reachlive event) lost to a Redis error or timeout; the service went on",
)

# Operator actions (reachlive admin, issue 20) carried out by this process: one family for every
# service that carries some out, defined once here (as the Redis series above) so that the
# processes of one machine and the tests, which import several services' metrics modules, register
# it once; each service's metrics.py names it. Counted where the action takes effect, only by a
# process that found something to act on (the relay that takes a restarted session over, an ingest
# that dropped publishers, ...). Labels: restart-session, disconnect, end-media, resend-status, revoke.
OPERATOR_ACTIONS = Counter(
    "reachlive_operator_actions_total",
    "operator actions (reachlive admin) this process carried out, by action: restart-session (relay), "
    "disconnect, end-media (ingest), revoke (ingest, gateway), resend-status (worker)",
    ["action"],
)


def start_metrics_server(port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``/metrics`` on a background thread; port 0 means off. Returns the port served."""
    if port <= 0:
        return 0
    server, _thread = start_http_server(port, addr=host, registry=registry)
    actual = server.server_address[1]
    log.info("metrics server listening", extra={"metrics_port": actual})
    return actual


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition text and its content type, for services that serve ``/metrics`` themselves."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
