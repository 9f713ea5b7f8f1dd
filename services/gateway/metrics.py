"""Every Prometheus metric of the gateway (docs/design.md section 8: one module, units in names, fixed
labels, never a task id or token as a label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS
from shared.metrics import OPERATOR_ACTIONS as OPERATOR_ACTIONS  # reachlive admin: revoke (one family for all)

CONNECTION_STATES = ("authenticating", "catching_up", "live", "closing")
AUTH_FAILURE_REASONS = ("missing", "invalid", "timeout", "rate_limited", "bad_request")

CONNECTIONS = Gauge("reachlive_gateway_connections", "Caption WebSocket connections by state", ["state"])
AUTH_FAILURES = Counter("reachlive_gateway_auth_failures_total", "Refused caption connections by reason", ["reason"])
FRAMES_SENT = Counter("reachlive_gateway_frames_sent_total", "Caption responses written to clients")
BYTES_SENT = Counter("reachlive_gateway_sent_bytes_total", "Bytes of caption responses written to clients")
DELIVERY_LAG = Histogram(
    "reachlive_gateway_delivery_lag_seconds",
    "From the captions XADD to the frame written to the client (live frames only)",
    buckets=LATENCY_BUCKETS,
)
RESUMES = Counter("reachlive_gateway_resumes_total", "Connections that resumed from a saved cursor")
SLOW_CLOSES = Counter("reachlive_gateway_slow_subscriber_closes_total", "Connections closed for falling too far behind")
CLOSES = Counter("reachlive_gateway_closes_total", "Connections closed by the gateway, by close code", ["code"])
REVOCATIONS = Counter("reachlive_gateway_revocations_total", "Connections closed because their task was cancelled")
READERS = Gauge("reachlive_gateway_stream_readers", "Shared Redis readers (one per task with subscribers)")
CURSOR_SAVES = Counter("reachlive_gateway_cursor_saves_total", "Delivered-cursor writes to Redis")
INBOUND_REFUSED = Counter(
    "reachlive_gateway_inbound_refused_total",
    "Connections closed for flooding (messages or control frames) or oversized messages",
)
WRITE_BUFFER_ABORTS = Counter(
    "reachlive_gateway_write_buffer_aborts_total",
    "Connections aborted because their unsent output passed REACHLIVE_GATEWAY_MAX_WRITE_BUFFER_BYTES",
)
TASK_LIMIT_REFUSALS = Counter(
    "reachlive_gateway_task_limit_refusals_total",
    "Connections closed 1013 because their task had REACHLIVE_GATEWAY_MAX_CONNECTIONS_PER_TASK open",
)
LIMITED_VALID_TOKENS = Counter(
    "reachlive_gateway_rate_limited_valid_tokens_total",
    "Connections with a valid token served although their address was over the failed-auth limit",
)

for _state in CONNECTION_STATES:
    CONNECTIONS.labels(_state)
for _reason in AUTH_FAILURE_REASONS:
    AUTH_FAILURES.labels(_reason)
