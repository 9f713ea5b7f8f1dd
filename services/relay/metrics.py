"""The relay's Prometheus metrics (one place per service, docs/design.md section 8): names with units,
fixed label sets, no event or task ids as labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS
from shared.metrics import OPERATOR_ACTIONS as OPERATOR_ACTIONS  # reachlive admin: restart-session (one family for all)

SESSIONS_OWNED = Gauge("reachlive_relay_sessions_owned", "Live event sessions this replica owns")
SESSIONS_CLAIMED = Counter(
    "reachlive_relay_sessions_claimed_total",
    "Sessions claimed, by how",
    ["how"],  # new | failover
)
FAILOVERS = Counter("reachlive_relay_failovers_total", "Sessions taken over from another replica (XAUTOCLAIM)")
SESSIONS_LOST = Counter(
    "reachlive_relay_sessions_lost_total", "Sessions this replica stopped because another took them over"
)
SESSIONS_FINISHED = Counter(
    "reachlive_relay_sessions_finished_total",
    "Sessions finished, by outcome",
    ["outcome"],  # ready|error|cancelled
)
KWIK_CONNECTS = Counter("reachlive_relay_kwikmotion_connects_total", "KWIKmotion connections opened")
RECONNECTS = Counter(
    "reachlive_relay_reconnects_total",
    "KWIKmotion reconnects, by cause",
    ["cause"],  # drop | internal_error | capacity | silent | timeout | protocol | auth | other
)
ERRORS = Counter(
    "reachlive_relay_kwikmotion_errors_total",
    "KWIKmotion Error messages and close codes, by code",
    ["code"],  # the seed's codes: 4001 4004 1008 1011 401 403, or "other"
)
AUTH_FAILURES = Counter(
    "reachlive_relay_kwikmotion_auth_failures_total",
    "KWIKmotion authentication errors (a configuration fault: alert on any)",
)
AUDIO_ADDED_LAG = Histogram(
    "reachlive_relay_audio_added_lag_seconds",
    "Chunk sent to KWIKmotion → its AudioAdded",
    buckets=LATENCY_BUCKETS,
)
ROUND_TRIP = Histogram(
    "reachlive_relay_kwikmotion_round_trip_seconds",
    "Chunk sent to KWIKmotion → its AddTranscript",
    buckets=LATENCY_BUCKETS,
)
ADDED_LATENCY = Histogram(
    "reachlive_relay_added_latency_seconds",
    "KWIKmotion result received → captions XADDed",
    buckets=LATENCY_BUCKETS,
)
AUDIO_SENT = Counter("reachlive_relay_audio_sent_seconds_total", "Audio sent to KWIKmotion (incl. replays)")
AUDIO_REPLAYED = Counter(
    "reachlive_relay_audio_replayed_seconds_total", "Audio sent again after a reconnect or takeover"
)
CAPTIONS_WRITTEN = Counter(
    "reachlive_relay_caption_entries_total",
    "Caption stream entries written",
    ["kind"],  # transcript|captions
)
FENCED = Counter(
    "reachlive_relay_fenced_writes_total", "Caption writes refused because another replica owns the session"
)
COMMIT_GAPS = Counter(
    "reachlive_relay_commit_gaps_total",
    "Caption commits refused because Redis lost earlier ones (a failover to a lagging replica): session restarted",
)
IDLE_CLOSES = Counter(
    "reachlive_relay_idle_closes_total",
    "KWIKmotion sessions closed during a media pause (REACHLIVE_RELAY_IDLE_CLOSE_SECONDS without audio)",
)
IDLE_REOPENS = Counter(
    "reachlive_relay_idle_reopens_total", "KWIKmotion sessions reopened when the audio came back after an idle close"
)
PARTIAL_FLUSHES = Counter(
    "reachlive_relay_partial_chunks_flushed_total",
    "Partial chunks sent because no audio came for REACHLIVE_RELAY_FLUSH_AFTER_SECONDS (a pause)",
)
LATE_ORDERS = Counter("reachlive_relay_late_orders_total", "Reconnects to serve tasks ordered while the event was live")
SESSIONS_REFUSED = Gauge(
    "reachlive_relay_sessions_refused",
    "Sessions KWIKmotion currently refuses (401/403 or 4004 for the source language): alert at once",
)
TARGETS_REFUSED = Counter(
    "reachlive_relay_targets_refused_total", "Translation targets KWIKmotion refused (4004): their tasks went ERROR"
)
# Issue 17: KWIKmotion servers reading the seed differently. Fixed label sets, from
# shared.kwikmotion.results (DROP_REASONS, MISSING_REASONS, TIME_BASES).
RESULTS_DROPPED = Counter(
    "reachlive_relay_kwikmotion_results_dropped_total",
    "KWIKmotion results that could not be placed or parsed, by reason",
    ["reason"],  # malformed | no_chunk_index | unknown_chunk | duplicate | not_a_target | unpaired | late
)
UNKNOWN_MESSAGES = Counter(
    "reachlive_relay_kwikmotion_unknown_messages_total",
    "KWIKmotion messages of a type the seed does not list (ignored)",
)
RESULTS_MISSING = Counter(
    "reachlive_relay_kwikmotion_results_missing_total",
    "KWIKmotion results that never came: their chunk was released without them",
    ["result", "reason"],  # transcript|translation; omitted_empty | wait | end_of_transcript
)
FIELDS_DERIVED = Counter(
    "reachlive_relay_kwikmotion_fields_derived_total",
    "AddTranscript fields missing or unusable, derived (word count from the text, language from the session)",
    ["field"],  # word_count | language | times
)
TIMES_CLAMPED = Counter(
    "reachlive_relay_kwikmotion_times_clamped_total",
    "Transcripts whose times were moved into their chunk or after the previous one (word-boundary buffering)",
)
TIME_BASE = Counter(
    "reachlive_relay_kwikmotion_time_base_total",
    "KWIKmotion sessions by the time base their results showed",
    ["base"],  # session | chunk
)
# Issue 22: one shared reader of the sessions' audio streams per process (services/relay/reader.py).
AUDIO_READS = Counter("reachlive_relay_audio_reads_total", "XREADs of the shared audio reader (one per process)")
AUDIO_READ_ENTRIES = Counter(
    "reachlive_relay_audio_read_entries_total", "Audio entries the shared reader handed to sessions"
)
AUDIO_READ_STREAMS = Histogram(
    "reachlive_relay_audio_read_streams",
    "Audio streams (sessions) in one read of the shared reader",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
AUDIO_SUBSCRIPTIONS = Gauge(
    "reachlive_relay_audio_subscriptions", "Sessions the shared audio reader reads for (connections, paused sessions)"
)
AUDIO_READS_HELD = Counter(
    "reachlive_relay_audio_reads_held_total",
    "Streams left out of a read because their session's queue was full (back-pressure: a slow session)",
)
AUDIO_READER_WAKES = Counter(
    "reachlive_relay_audio_reader_wakes_total", "Blocked reads of the shared audio reader woken for a new session"
)
