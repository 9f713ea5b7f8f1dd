"""Every Prometheus metric of the poller (docs/design.md section 8: one place, units in names, fixed labels).

Labels are bounded: Kaltura error codes outside the known set count as ``OTHER``; no task or
event ids anywhere.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.kaltura import errors
from shared.metrics import LATENCY_BUCKETS
from shared.metrics import OPERATOR_ACTIONS as OPERATOR_ACTIONS  # reachlive admin: resend-status (one family for all)

POLLS = Counter("reachlive_poller_polls_total", "getJobs polls run by the workers", ["result"])
JOBS_LISTED = Gauge("reachlive_poller_jobs_listed", "tasks in the last getJobs listing", ["status"])
TASKS = Counter(
    "reachlive_poller_tasks_total",
    "REACH task outcomes: scheduled, refused, cancelled, processing, ready, error, failed, "
    "duplicate (a provision that found the work done or in progress), rekeyed, expired / no_show (a "
    "provision found the task's window passed: ERROR; PENDING / SCHEDULED at Kaltura)",
    ["outcome"],
)
KALTURA_SECONDS = Histogram(
    "reachlive_poller_kaltura_call_seconds",
    "Kaltura API call latency",
    # Not "service": the scrape sets that label to the reachlive stage (poller, worker) and would
    # rename this one to exported_service, where no rule or dashboard looks for it.
    ["kaltura_service", "action"],
    buckets=LATENCY_BUCKETS,
)
KALTURA_ERRORS = Counter(
    "reachlive_poller_kaltura_errors_total", "Kaltura API errors by code", ["kaltura_service", "action", "code"]
)
REGISTRY_EVENTS = Gauge("reachlive_poller_registry_events", "events in the registry")
REGISTRY_TASKS = Gauge("reachlive_poller_registry_tasks", "tasks provisioned and not yet final")
TASKS_OVERDUE = Gauge(
    "reachlive_poller_tasks_overdue",
    "tasks still SCHEDULED more than a margin after their start (the media never reached the ingest)",
)
NO_SHOWS = Counter(
    "reachlive_poller_no_shows_total",
    "tasks moved to ERROR because their window passed without any media (found by reconcile, or "
    "still SCHEDULED at Kaltura after the registry forgot them)",
)
EVENT_CHECKS = Counter(
    "reachlive_poller_event_checks_total",
    "reconcile's per-event checks: sent, busy (the previous one still queued or running: the "
    "workers are behind the poll), done (every check run), failed (a Kaltura call of a check failed; the "
    "next poll retries)",
    ["result"],
)
FINALIZE_RECOVERED = Counter(
    "reachlive_poller_finalize_recovered_total",
    "tasks finalized by reconcile because the relay had ended them (relay state finished, or the "
    "task ended alone) more than two poll periods earlier and its FINALIZE command never arrived "
    "(lost with a Redis failover or restart): ready, error",
    ["outcome"],
)
PROVISION_SECONDS = Histogram(
    "reachlive_poller_provision_seconds", "one provision run, start to SCHEDULED", buckets=LATENCY_BUCKETS
)

_KNOWN_CODES = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}
_SERVICES = {"session", "apptoken", "reach_entryvendortask", "reach_vendorcatalogitem", "schedule_scheduleevent"}


def observe_kaltura(service: str, action: str, seconds: float, code: str | None) -> None:
    """The facade's hook: latency per call, errors by (bounded) code."""
    service = service if service in _SERVICES else "other"
    KALTURA_SECONDS.labels(service, action).observe(seconds)
    if code is not None:
        KALTURA_ERRORS.labels(service, action, code if code in _KNOWN_CODES else "OTHER").inc()
