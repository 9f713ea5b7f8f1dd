"""Every Redis key, stream, consumer group, channel and TTL of reachlive, in one place.

Keys of one scheduled event share the hash tag ``{<event id>}`` so that a Redis Cluster keeps
them on one node (docs/design.md section 8). Global indexes (by media-key / caption-token hash, the
sessions stream) have no tag: they are looked up alone.

Who writes what (the contract between services):

- poller: ``event``, ``event_tasks``, ``task``, ``task_event``, ``media_key``, ``caption_token``,
  ``EVENTS``, ``TASKS``; publishes task ids on ``REVOKED_CHANNEL`` when it cancels a task.
- ingest: ``audio`` (audio and end-of-stream entries), ``ingest_state``, ``ingest_primary``,
  ``ingest_publishers``, ``ingest_presence`` and ``ingest_refused`` (for the console);
  adds one entry per event to ``SESSIONS_STREAM`` (guarded by ``event`` field ``session``).
- relay: consumes ``SESSIONS_STREAM`` in group ``RELAY_GROUP``, keeps ``relay_state``, writes
  ``captions`` of each task; each replica wakes its own audio reader with ``relay_wake``.
- gateway: reads ``captions``, keeps a ``lineage`` hash per task (one record per caption
  connection: its proven cursor) and its own ``gateway_instance`` heartbeat, with
  ``GATEWAY_INSTANCES`` and ``gateway_connections`` (open connections per task, for the console).
- every service: appends to ``event_log`` (shared/journal.py) what it did for an event.
- console (services/console/): reads all of the above; ``reachlive status`` only reads;
  ``reachlive admin`` (operator actions) publishes on ``OPERATOR_CHANNEL``, sets an event's
  status "ended", hands a session entry to ``RELAY_OPERATOR_CONSUMER`` (``RELAY_RESTART``).
"""

from __future__ import annotations

PREFIX = "rl"

# --- global --------------------------------------------------------------------------------
SESSIONS_STREAM = f"{PREFIX}:sessions"  # one entry per live event: {"v": "1", "event": id}
RELAY_GROUP = "relay"  # consumer group of the relays on SESSIONS_STREAM
EVENTS = f"{PREFIX}:events"  # set of event ids with a live registry entry
# Sorted set: event id scored by its window's close (end + postEndTime), written with the window.
# The console reads the events around now from it: EVENTS holds the whole retention period.
EVENTS_BY_CLOSE = f"{PREFIX}:events:by_close"
TASKS = f"{PREFIX}:tasks"  # set of task ids provisioned and not yet final
REVOKED_CHANNEL = f"{PREFIX}:revoked"  # pub/sub: task id whose token/key was just revoked
# pub/sub: operator requests the ingest and the gateway carry out at once (reachlive admin
# disconnect / revoke): JSON, shared/operator.py; heard by the revocation listener.
OPERATOR_CHANNEL = f"{PREFIX}:operator"
BEAT_PREFIX = f"{PREFIX}:beat:"  # celery-redbeat's keys (schedule and leader lock)
BROKER_PREFIX = f"{PREFIX}:celery:"  # kombu's global_keyprefix for the Celery queues


def _tag(event_id: str | int) -> str:
    return f"{PREFIX}:{{{event_id}}}"


def event_keys_pattern(event_id: str | int) -> str:
    """SCAN MATCH pattern for every key of an event (all carry its hash tag): bench/pipeline.py's
    memory per event."""
    return f"{_tag(event_id)}*"


# --- registry (poller) ---------------------------------------------------------------------
def event(event_id: str | int) -> str:
    """Hash: the scheduled event (window, source language, status, session flag)."""
    return f"{_tag(event_id)}:event"


def event_tasks(event_id: str | int) -> str:
    """Set: ids of the tasks (features) of the event."""
    return f"{_tag(event_id)}:tasks"


def task(event_id: str | int, task_id: str | int) -> str:
    """Hash: one REACH task (kind, language, reach profile, status, key/token hashes)."""
    return f"{_tag(event_id)}:task:{task_id}"


def task_event(task_id: str | int) -> str:
    """String: the event id of a task, for lookups that start from a Kaltura task id."""
    return f"{PREFIX}:task-event:{task_id}"


def provision_lock(task_id: str | int) -> str:
    """String (NX, short TTL): one provision of a task at a time across workers."""
    return f"{PREFIX}:lock:provision:{task_id}"


def check_lock(event_id: str | int) -> str:
    """String (NX, TTL): one reconcile check of an event queued or running at a time, so polls
    do not pile checks up while the workers are behind."""
    return f"{PREFIX}:lock:check:{event_id}"


def media_key(key_hash: str) -> str:
    """Hash {event, task}: a media key (by SHA-256 hex) that may publish for an event."""
    return f"{PREFIX}:media-key:{key_hash}"


def caption_token(token_hash: str) -> str:
    """Hash {event, task}: a caption token (by SHA-256 hex) that may read a task's captions."""
    return f"{PREFIX}:caption-token:{token_hash}"


# --- media (ingest) ------------------------------------------------------------------------
def audio(event_id: str | int) -> str:
    """Stream: 16 kHz mono s16le chunks and the end-of-stream entry (shared.streams)."""
    return f"{_tag(event_id)}:audio"


def ingest_state(event_id: str | int) -> str:
    """Hash: media time written so far, so a reconnecting publisher continues the timeline
    (fields: samples, pts_end, epoch_end, alive = last publisher activity, eos = "1")."""
    return f"{_tag(event_id)}:ingest"


def ingest_primary(event_id: str | int) -> str:
    """String with TTL: the publisher id that currently writes the event's audio."""
    return f"{_tag(event_id)}:ingest:primary"


def ingest_publishers(event_id: str | int, task_id: str | int) -> str:
    """Sorted set: the accepted publishers of one task on every replica (member: a publish id,
    score: when it lapses, epoch ms), for the cap on publishers per task (services/ingest/slots.py)."""
    return f"{_tag(event_id)}:ingest:publishers:{task_id}"


def ingest_presence(event_id: str | int) -> str:
    """Hash: the event's accepted publishers on every ingest replica, for the operator's console
    (services/ingest/presence.py). Field: a publisher id (the one ``ingest_primary`` holds when it
    writes); value: JSON {task, replica, address, behind (s since its last audio arrived), seen
    (epoch s)}. Written at the accept and at each revalidation of a publish (every few seconds),
    the field deleted at its close; the hash expires ``INGEST_PRESENCE_TTL_SECONDS`` after the
    last write (a crashed replica's fields are older than that: the console ignores them)."""
    return f"{_tag(event_id)}:ingest:presence"


def ingest_refused(event_id: str | int) -> str:
    """Hash: publishes of the event the ingest refused, for the console. Field: the refusal
    reason (a metric label: too_early, too_many_publishers, ...) → how many; field
    ``<reason>`` + ``INGEST_REFUSED_AT`` → the last one's epoch s. Expires
    ``INGEST_REFUSED_TTL_SECONDS`` after the last refusal."""
    return f"{_tag(event_id)}:ingest:refused"


INGEST_REFUSED_AT = "@"


# Set: event ids whose media session is open and has no end-of-stream yet; every ingest
# replica sweeps it to write the end-of-stream entry (window closed, every task cancelled, or
# the event gone: a pause never ends the media).
INGEST_ACTIVE = f"{PREFIX}:ingest:active"


# --- speech (relay) ------------------------------------------------------------------------
def relay_wake(consumer: str) -> str:
    """Stream (its last entry only, expiring an hour after the last): one relay replica's wake-ups
    of its shared audio reader, read with the audio streams (services/relay/reader.py)."""
    return f"{PREFIX}:relay:wake:{consumer}"


def relay_state(event_id: str | int) -> str:
    """Hash: the relay's persisted cursor (audio id transcribed, caption positions, offsets)."""
    return f"{_tag(event_id)}:relay"


# keys.relay_state(E) fields, written by the relay (writer.CaptionWriter commits them with the
# captions): the fencing epoch of the current claim, the cursor (last audio id transcribed), per
# task its position and caption builder state, and once the session is over its outcome.
RELAY_EPOCH = "epoch"
RELAY_CURSOR = "cursor"
# The last audio id of the chunk before the cursor's, when KWIKmotion reports words across chunk
# boundaries (a transcript starting before its chunk): a session that did not end cleanly is
# replayed from here, so the server hears the word cut at the cursor again (issue 17). Else the
# cursor itself.
RELAY_PRIME = "prime"
RELAY_FINISHED = "finished"  # "1" once every task's end-of-stream responses are written
RELAY_OUTCOME = "outcome"  # ready | error
RELAY_REASON = "reason"  # errDescription when the outcome is error
RELAY_TASK_PREFIX = "task:"  # task:<id> → JSON {"done": audio id, "builder": state}
# "<epoch>:<n>": the last caption commit applied (n counts a claim's commits), so a commit retried
# after a reply lost in a Redis outage (a frozen Redis applies it on thaw) is applied once.
RELAY_COMMIT = "commit"
# Epoch seconds of KWIKmotion's first refusal (401/403, 4004 for the source language) since a
# session last started: the refusal deadline counts from it on any replica.
RELAY_REFUSED_SINCE = "refused_since"
# ended:<id> → errDescription: a task the relay ended on its own while the event goes on (4004
# for its target language); it is left out of later KWIKmotion sessions.
RELAY_ENDED_PREFIX = "ended:"
# For the operator's console (issue 20), written with writes that exist: the claim (its epoch
# bump) sets when and by which relay consumer the session was claimed; each caption commit that
# moves the cursor sets the media time (s) the committed captions reach and when (epoch s); a
# KWIKmotion session that ended and is retried sets "<epoch s> <cause>", cleared when one starts.
RELAY_CLAIMED_AT = "claimed_at"
RELAY_CLAIMED_BY = "claimed_by"
RELAY_COMMITTED_MEDIA = "committed_t"
RELAY_COMMITTED_AT = "committed_at"
RELAY_RETRYING = "retrying"
# captioned:<id> → epoch s of the last commit that added captions for the task (console).
RELAY_CAPTIONED_PREFIX = "captioned:"
# reachlive admin restart-session: the epoch s of the request. The console hands the session's
# entry to RELAY_OPERATOR_CONSUMER, idle past any failover timeout: the relay holding it finds it
# lost at its next heartbeat and stops, and the next XAUTOCLAIM (any relay) takes it over from the
# cursor; the relay that does deletes this field (and logs and counts the restart).
RELAY_RESTART = "restart"
RELAY_OPERATOR_CONSUMER = "~operator"
# usage:<id> → "<words> <session seconds>": the task's words captioned so far (text items of its
# captions responses; of its transcript ones if it gets no captions) and the seconds the
# KWIKmotion sessions serving it were open (each from RecognitionStarted to its last commit).
# Committed with the captions they count; read by the poller's usage record (issue 20).
RELAY_USAGE_PREFIX = "usage:"


def relay_task_field(task_id: str | int) -> str:
    """Field of ``relay_state(E)``: one task's emitted position and caption builder state."""
    return f"{RELAY_TASK_PREFIX}{task_id}"


def relay_captioned_field(task_id: str | int) -> str:
    """Field of ``relay_state(E)``: when the task's captions were last committed (console)."""
    return f"{RELAY_CAPTIONED_PREFIX}{task_id}"


def relay_usage_field(task_id: str | int) -> str:
    """Field of ``relay_state(E)``: the task's words and speech-session seconds so far."""
    return f"{RELAY_USAGE_PREFIX}{task_id}"


def relay_ended_field(task_id: str | int) -> str:
    """Field of ``relay_state(E)``: a task ended by the relay mid-event (its errDescription)."""
    return f"{RELAY_ENDED_PREFIX}{task_id}"


def captions(event_id: str | int, task_id: str | int) -> str:
    """Stream: ready-to-send Kaltura responses of one task (shared.streams.CaptionEntry)."""
    return f"{_tag(event_id)}:captions:{task_id}"


# --- per-event log (every service writes, console reads) -----------------------------------
def event_log(event_id: str | int) -> str:
    """Stream: the event's history for ``reachlive event`` (shared/journal.py): one entry per
    thing that happened (provisioned, publish accepted/refused, session opened/closed, status
    sent, operator action), fields ``kind``, ``t`` (epoch s) and its own words. Capped at
    ``EVENT_LOG_MAXLEN`` entries; expires with the event's captions (retention after its end)."""
    return f"{_tag(event_id)}:log"


# --- usage records (poller writes, console reads) --------------------------------------------
# Stream: one record per task at its end (shared/usage.py), trimmed by time to the retention
# period (XADD MINID). It and the set of tasks recorded share the hash tag {usage}, so the
# exactly-once append is one script on one node of a Redis Cluster.
USAGE_STREAM = f"{PREFIX}:{{usage}}:records"
USAGE_RECORDED = f"{PREFIX}:{{usage}}:recorded"  # sorted set: task id, scored by epoch s recorded


# --- delivery (gateway) --------------------------------------------------------------------
def lineage(event_id: str | int, task_id: str | int) -> str:
    """Hash: the task's caption connections (services/gateway/lineage.py, docs/design.md section 5).
    Field: a connection id; value ``"<seq> <o|c> <cursor> <instance>"``: the order of its open
    (``o``) or close (``c``), the captions stream id proven delivered on it (``0-0``: nothing),
    and the gateway process serving it. A new connection takes over (deletes) the closed record
    of highest seq. Expires with the task's captions stream (``LINEAGE_TTL_SECONDS`` until that
    has an expiry); at most ``LINEAGE_MAX_RECORDS`` records, the oldest dropped."""
    return f"{_tag(event_id)}:lineage:{task_id}"


LINEAGE_SEQ = "~seq"  # field of ``lineage(E, T)``: the counter behind the records' seq


def gateway_instance(instance_id: str) -> str:
    """String with TTL: a gateway process's heartbeat counter, bumped every second; a process
    whose counter stops moving is dead and its open lineage records count as closed."""
    return f"{PREFIX}:gateway:instance:{instance_id}"


# Sorted set: gateway instance ids scored by the epoch s of their last heartbeat (the console's
# index of the gateways; an instance silent for GATEWAY_INSTANCE_TTL_SECONDS is dropped by the others).
GATEWAY_INSTANCES = f"{PREFIX}:gateway:instances"


def gateway_connections(instance_id: str) -> str:
    """Hash with TTL: one gateway process's open caption connections, for the console. Field
    ``"<event id> <task id>"``: the count; field ``~host``: its host name and pid. Rewritten by
    the heartbeat when the counts change, its expiry renewed at every beat."""
    return f"{PREFIX}:gateway:connections:{instance_id}"


GATEWAY_CONNECTIONS_HOST = "~host"


# --- TTLs and retention --------------------------------------------------------------------
# What an event leaves behind is kept CommonSettings().retention_seconds (REACHLIVE_RETENTION_DAYS,
# default 30) after its end (docs/design.md section 4): its captions streams, the relay state
# (positions, usage counters), the ingest state (media time), the registry records, the per-event
# log, and the tasks' usage records. The audio is not (115 MB per hour of an event, transcribed
# already): it goes an hour after the end of stream.
AUDIO_RETENTION_AFTER_END_SECONDS = 3600
# The media key and caption token lookups of an ended event's tasks: a day after its window, not
# the retention period (REACHLIVE_RETENTION_DAYS keeps the records and captions for the console,
# which reads Redis; nobody publishes or reads live captions a day after the window).
KEY_INDEX_TTL_AFTER_END_SECONDS = 86400
PROVISION_LOCK_SECONDS = 60
INGEST_PRIMARY_TTL_SECONDS = 5
# A task's lineage hash expires with its captions stream (the relay sets that stream's expiry at
# each commit: the event's end + the retention period); this until it has one.
LINEAGE_TTL_SECONDS = 86400
LINEAGE_MAX_RECORDS = 64  # per task: far above the per-replica connection cap of a task
GATEWAY_INSTANCE_TTL_SECONDS = 60  # only to clear a dead process's key: death is a counter that stops
GATEWAY_CONNECTIONS_TTL_SECONDS = 5  # five beats: a live gateway renews it every second
INGEST_PRESENCE_TTL_SECONDS = 20  # four revalidations of a publish
INGEST_REFUSED_TTL_SECONDS = 900
# Entries kept per event log (XADD MAXLEN ~): the whole history of a long event whose encoder
# reconnects every minute; shared/journal.py says why and what it costs.
EVENT_LOG_MAXLEN = 1000


# --- registry hash fields (the contract the poller writes and the others read) -------------
# keys.event(E), written by the poller (ingest sets "status"=live and "session"=1):
#   id, partner_id, start, end (epoch s, the scheduled event's startDate/endDate),
#   pre_start, post_end (s, the largest over its tasks' features), source_language (ISO 639-1,
#   what KWIKmotion takes), source_language_code (Kaltura response code, e.g. "en-US"),
#   status ("scheduled" | "live" | "ended" | "cancelled"; "ended": an operator ended the media,
#   reachlive admin end-media), session ("1" once the media session was opened on SESSIONS_STREAM).
# keys.task(E, T), written by the poller:
#   id, event, partner_id, feature ("8" LIVE_CAPTION | "11" LIVE_TRANSLATION),
#   kind ("caption" | "translation"), language (ISO 639-1 of its responses: the source for a
#   caption task, the target for a translation task), language_code (response code, "fr-CA"),
#   max_chars (maxCharactersPerCaptionLine), profanity ("0" | "1", enableProfanityRemoval),
#   status (Kaltura EntryVendorTaskStatus as a number), cancelled ("0" | "1"),
#   media_key_hash, caption_token_hash (hashing.secret_hash), start, end (task window, epoch s),
#   error (errDescription when status is ERROR).
# Poller-private field of keys.task(E, T) (TaskRecord.extra): epoch seconds at which reconcile
# first saw the relay's end of the task (relay state finished=1 or ended:<T>); past a grace period
# with the task still live, its FINALIZE command was lost and reconcile finalizes it (issue 18).
TASK_RELAY_END_SEEN = "relay_end_seen"
# Poller-private fields of keys.task(E, T) (issue 19): the task's Kaltura accessKey, sealed with
# REACHLIVE_POLLER_ENCRYPTION_KEYS (services/poller/sealing.py) while the task is live, deleted
# when it ends or is cancelled; TASK_ACCESS_KEY is the plain field of records written before,
# still read, and replaced by the sealed one at the next reconcile.
TASK_ACCESS_KEY_SEALED = "access_key_sealed"
TASK_ACCESS_KEY = "access_key"
# Cancelling a task: the poller deletes its media_key / caption_token index entries, sets
# cancelled=1, and publishes "<event id>:<task id>" on REVOKED_CHANNEL; when every task of an
# event is cancelled the event's status becomes "cancelled".
EVENT_FIELDS = (
    "id",
    "partner_id",
    "start",
    "end",
    "pre_start",
    "post_end",
    "source_language",
    "source_language_code",
    "status",
    "session",
)
TASK_FIELDS = (
    "id",
    "event",
    "partner_id",
    "feature",
    "kind",
    "language",
    "language_code",
    "max_chars",
    "profanity",
    "status",
    "cancelled",
    "media_key_hash",
    "caption_token_hash",
    "start",
    "end",
    "error",
)
