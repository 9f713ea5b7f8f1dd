"""Prometheus metrics of the ingest (docs/design.md section 8: one module, units in names, fixed labels,
no task or event ids as labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS
from shared.metrics import OPERATOR_ACTIONS as OPERATOR_ACTIONS  # reachlive admin (one family for all)

CONNECTIONS = Gauge("reachlive_ingest_connections", "TCP connections open (any state)")
PUBLISHERS = Gauge("reachlive_ingest_publishers", "accepted publishers connected, by role", ["role"])
REJECTED = Counter(
    "reachlive_ingest_publish_rejected_total",
    "publishes refused (NetStream.Publish.BadName; .Failed while Redis is unavailable), by reason",
    ["reason"],
)
CLOSED = Counter(
    "reachlive_ingest_connections_closed_total",
    "connections closed, by cause (eof, idle, handshake_timeout, protocol, revoked, window, ended, shutdown; "
    "operator: reachlive admin disconnect; "
    "write_buffer, write_timeout: the peer did not read what we sent)",
    ["cause"],
)
CONNECTIONS_REFUSED = Counter(
    "reachlive_ingest_connections_refused_total",
    "connections refused at accept by a cap (total: REACHLIVE_INGEST_MAX_CONNECTIONS; per_address: "
    "REACHLIVE_INGEST_MAX_PENDING_PER_ADDRESS)",
    ["cap"],
)
PROTOCOL_ERRORS = Counter(
    "reachlive_ingest_protocol_errors_total", "connections closed for breaking RTMP, by kind", ["kind"]
)
RECEIVED_BYTES = Counter("reachlive_ingest_received_bytes_total", "bytes received from publishers")
AUDIO_SECONDS = Counter("reachlive_ingest_audio_seconds_total", "seconds of 16 kHz PCM written to audio streams")
AUDIO_BYTES = Counter("reachlive_ingest_audio_bytes_total", "bytes of 16 kHz PCM written to audio streams")
DECODE_ERRORS = Counter(
    "reachlive_ingest_decode_errors_total", "audio messages that could not be decoded, by codec", ["codec"]
)
REDIS_WRITE = Histogram(
    "reachlive_ingest_redis_write_seconds", "latency of one audio chunk write to Redis", buckets=LATENCY_BUCKETS
)
TAKEOVERS = Counter("reachlive_ingest_takeovers_total", "a publisher became the writer of its event's audio")
SESSIONS_OPENED = Counter("reachlive_ingest_sessions_opened_total", "media sessions opened (first publish)")
END_OF_STREAM = Counter("reachlive_ingest_end_of_stream_total", "end-of-stream entries written, by reason", ["reason"])
EVENTS_PAUSED = Gauge(
    "reachlive_ingest_events_paused",
    "open media sessions whose publishers went away (paused until a publish resumes them or the window ends)",
)
OUTAGE_DROPPED = Counter(
    "reachlive_ingest_outage_dropped_seconds_total",
    "seconds of audio dropped (oldest first) because a Redis outage outlasted the outage buffer",
)
REWRITTEN = Counter(
    "reachlive_ingest_rewritten_seconds_total",
    "seconds of audio written again because Redis lost writes it had acknowledged (a failover to a lagging replica)",
)
