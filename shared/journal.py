"""The bounded per-event log behind ``reachlive event EVENT_ID`` (issue 20).

Each service appends what it did for an event, next to the log line that says it: the poller
and worker (provisioned, status sent to Kaltura, window moved, no-show, cancelled), the ingest
(publish accepted or refused, publisher gone, failover, end of stream), the relay (speech session
opened, closed, taken over), the console (operator actions). One stream per event,
``keys.event_log(E)``, fields ``kind``, ``t`` (epoch s, when it happened) and the entry's own,
all flat strings (docs/design.md section 8).

Bounded twice:

- in length: ``XADD MAXLEN ~ MAXLEN``. An ordinary event writes a few dozen entries (per task:
  provisioned, two or three statuses; a few publishes and sessions). What grows is repetition:
  an encoder reconnecting in a loop writes two entries per attempt (its refusals are throttled:
  ``Throttle``). 1000 keeps the whole history of an 8-hour event whose encoder reconnects every
  minute. Measured with ``MEMORY USAGE`` on the embedded Redis: 110-135 bytes an entry, so at most
  ~140 kB for a full log, ~5 kB for an ordinary event (30 days of 500 events a day: ~75 MB
  ordinary, ~2 GB if every one of them filled its log). ``~`` lets Redis trim whole nodes of 100
  entries, so the length stays between 1000 and 1100 and a trim costs no more than an XADD.
- in time: the stream is kept as long as the event's captions and registry records, until
  (event end + its post-end margin, or now if later) + ``REACHLIVE_RETENTION_DAYS``. The expiry is
  renewed at every write from the registry's event hash, in the same script as the XADD (one
  round trip; both keys carry the event's hash tag, so it runs on a Redis Cluster too). An
  event without a record (gone) counts from now.

Writing never raises: a log entry must not break the service that writes it. A failed write
(Redis down, too slow) is counted in ``reachlive_journal_write_failures_total`` (shared/metrics.py)
and logged at most once a minute; the entry is lost. Never pass secrets (media keys, caption
tokens, access keys, KS) as fields: field names that look like one are dropped.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from shared import keys
from shared.metrics import JOURNAL_WRITE_FAILURES
from shared.redis_client import text, text_map

log = logging.getLogger(__name__)

MAXLEN = keys.EVENT_LOG_MAXLEN
KIND = "kind"
TIME = "t"
# A field value longer than this is cut (a Kaltura error message, a KWIKmotion errDescription):
# the length bound above must also bound the bytes.
MAX_VALUE_CHARS = 300
# The async writer gives up after this long (a frozen Redis must not hold a service's task).
DEADLINE_SECONDS = 2.0
# Names of fields never written (secrets by name: the caller's mistake is not persisted).
_SECRET_WORDS = ("secret", "token", "password", "access_key", "accesskey", "ks", "media_key", "key")
_WARN_EVERY_SECONDS = 60.0

# KEYS: the event's log, its registry hash. ARGV: now (epoch s), retention (s), maxlen, then the
# entry's field/value pairs (kind and t first). The expiry counts from the event's end plus its
# post-end margin (registry fields "end", "post_end"), or from now if later or unknown.
_SCRIPT = """
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
local now = tonumber(ARGV[1])
local window = redis.call('HMGET', KEYS[2], 'end', 'post_end')
local last = now
local stop = tonumber(window[1])
if stop then
  stop = stop + (tonumber(window[2]) or 0)
  if stop > last then last = stop end
end
redis.call('EXPIREAT', KEYS[1], math.floor(last + tonumber(ARGV[2])))
return id
"""
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened to an event: when (epoch s), what (``kind``), and its details."""

    ts: float
    kind: str
    fields: dict[str, str] = field(default_factory=dict)
    id: str = ""  # the stream entry id

    def words(self) -> str:
        """The details as ``name=value`` words (values with spaces quoted), for one text line."""
        return " ".join(f"{k}={_quote(v)}" for k, v in self.fields.items())

    def as_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "kind": self.kind, "fields": dict(self.fields), "id": self.id}


def utc(ts: float) -> str:
    """An epoch time as entries write it: UTC, to the second (``2026-12-04 10:00:00Z``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _quote(value: str) -> str:
    return f'"{value}"' if (" " in value or not value) else value


def _is_secret(name: str) -> bool:
    low = name.lower()
    return any(low == w or low.endswith("_" + w) or low.startswith(w + "_") for w in _SECRET_WORDS) and not (
        low.endswith("_hash") or low.endswith("_id")
    )


def _args(kind: str, fields: dict[str, object], now: float, retention: float) -> list[str]:
    args = [repr(now), str(int(retention)), str(MAXLEN), KIND, kind, TIME, f"{now:.3f}"]
    for name, value in fields.items():
        if name in (KIND, TIME) or value is None or value == "":
            continue  # an empty detail says nothing
        if _is_secret(name):
            log.warning("journal: field %r dropped (looks like a secret)", name)
            continue
        val = value if isinstance(value, str) else f"{value:.3f}" if isinstance(value, float) else str(value)
        args += [name, val[:MAX_VALUE_CHARS]]
    return args


@functools.cache
def retention_seconds() -> float:
    """``REACHLIVE_RETENTION_DAYS`` in seconds, read once per process (settings are validated
    by the service at its start; this import is late so that importing the journal reads none)."""
    from shared.settings import CommonSettings

    return float(CommonSettings().retention_seconds)


_last_warning = [0.0]


def _failed(event_id: str, kind: str, exc: BaseException) -> None:
    JOURNAL_WRITE_FAILURES.inc()
    now = time.monotonic()
    if now - _last_warning[0] >= _WARN_EVERY_SECONDS:
        _last_warning[0] = now
        log.warning(
            "event log entry lost (%s: %s); further losses counted in reachlive_journal_write_failures_total",
            type(exc).__name__,
            exc,
            extra={"event_id": event_id, "kind": kind},
        )


def record(
    client: redis.Redis, event_id: str, kind: str, *, now: float | None = None, **fields: str | int | float
) -> None:
    """Append one entry to the event's log and renew its expiry; never raises."""
    try:
        args = _args(kind, fields, time.time() if now is None else now, retention_seconds())
        names = [keys.event_log(event_id), keys.event(event_id)]
        try:
            client.evalsha(_SHA, 2, *names, *args)
        except NoScriptError:
            client.eval(_SCRIPT, 2, *names, *args)
    except Exception as exc:  # a log write never breaks the service (counted, logged)
        _failed(event_id, kind, exc)


async def arecord(
    client: aioredis.Redis, event_id: str, kind: str, *, now: float | None = None, **fields: str | int | float
) -> None:
    """``record`` for asyncio services, within ``DEADLINE_SECONDS``; never raises (cancellation
    of the caller still propagates)."""
    try:
        args = _args(kind, fields, time.time() if now is None else now, retention_seconds())
        names = [keys.event_log(event_id), keys.event(event_id)]

        async def write() -> None:
            try:
                await client.evalsha(_SHA, 2, *names, *args)
            except NoScriptError:
                await client.eval(_SCRIPT, 2, *names, *args)

        await asyncio.wait_for(write(), DEADLINE_SECONDS)
    except Exception as exc:  # a log write never breaks the service (counted, logged)
        _failed(event_id, kind, exc)


class Throttle:
    """At most one entry per key (e.g. an event and a refusal reason) every ``seconds``: an
    encoder retrying a refused publish in a loop writes one entry a minute, saying how many
    attempts it stands for, not one per attempt that would push the event's history out of the
    capped stream. Remembers at most ``size`` keys (the oldest forgotten: an entry too many)."""

    def __init__(self, seconds: float = 60.0, size: int = 4096) -> None:
        self.seconds = seconds
        self.size = size
        self._seen: OrderedDict[object, list[float]] = OrderedDict()  # key → [last written, repeats]

    def take(self, key: object, now: float | None = None) -> int | None:
        """None: leave this one out; else write it, the number returned being how many were
        left out since the last one written."""
        now = time.monotonic() if now is None else now
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.seconds:
            seen[1] += 1
            return None
        repeats = int(seen[1]) if seen is not None else 0
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return repeats


def _entry(entry_id: bytes | str, raw: dict) -> Entry:
    d = text_map(raw)
    kind = d.pop(KIND, "?")
    try:
        ts = float(d.pop(TIME, "0"))
    except ValueError:
        ts = 0.0
    eid = text(entry_id)
    if not ts:
        ts = int(eid.split("-")[0]) / 1000.0
    return Entry(ts=ts, kind=kind, fields=d, id=eid)


def read(client: redis.Redis, event_id: str, count: int | None = None) -> list[Entry]:
    """The event's log, oldest first (the last ``count`` entries if given)."""
    if count is not None:
        return [_entry(i, raw) for i, raw in reversed(client.xrevrange(keys.event_log(event_id), count=count))]
    return [_entry(i, raw) for i, raw in client.xrange(keys.event_log(event_id))]
