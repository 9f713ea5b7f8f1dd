"""Usage records: one per REACH task at its end, for billing per customer (issue 20).

The poller appends a record where a task's final status is settled (services/poller/usage.py);
``reachlive usage`` (services/console/usage.py) lists them. They live on ``keys.USAGE_STREAM``,
trimmed by time to the retention period (``XADD MINID``: records older than
``REACHLIVE_RETENTION_DAYS`` go at the next append), so the stream id's time is when the task
ended, and ``--since``/``--until`` are an ``XRANGE``.

Exactly once per task, whatever runs the end twice (a repeated FINALIZE, reconcile's recovery
racing the relay's command, two workers): the append is one script that adds the task id to
``keys.USAGE_RECORDED`` (ZADD NX, scored by the time recorded, trimmed with the stream) and
XADDs only if it was not there. Both keys share a hash tag, so the script runs on a Redis Cluster.

Fields are flat strings (docs/design.md section 8), ``v`` the payload version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.redis_client import text
from shared.streams import PayloadError

VERSION = "1"

# KEYS: stream, recorded set. ARGV: task id, now (epoch s), oldest kept (epoch s), MINID of the
# stream (ms), then the record's field/value pairs. 1 if appended, 0 if the task has a record.
# Exact MINID (not ~, which only drops whole nodes of ~100 entries): appends are one per task, and
# a record past the retention period is gone when the period says.
_APPEND = """
if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], 'MINID', ARGV[4], '*', unpack(fields))
return 1
"""

PAGE = 1000  # records per XRANGE round trip when listing


@dataclass(frozen=True, slots=True)
class Record:
    """One task's usage. Times are epoch seconds; ``start``/``end`` the task's window (Kaltura's
    start − preStartTime to end + postEndTime), ``ended`` when its final status was settled."""

    partner_id: str
    event_id: str
    task_id: str
    service: str  # captions | translation
    feature: str  # Kaltura live feature: 8 LIVE_CAPTION, 11 LIVE_TRANSLATION
    source_language: str  # ISO 639-1
    target_language: str  # ISO 639-1 of its responses (the source for captions)
    status: str  # ready | error | cancelled
    start: float
    end: float
    ended: float
    media_seconds: float  # the event's media received by the ingest (its timeline)
    session_seconds: float  # KWIKmotion sessions serving the task, open
    words: int  # words of the task's captions

    def fields(self) -> dict[str, str]:
        out = {"v": VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = f"{value:.3f}" if isinstance(value, float) else str(value)
        return out

    @classmethod
    def parse(cls, raw: dict[Any, Any]) -> Record:
        got = {text(k): text(v) for k, v in raw.items()}
        if got.get("v") != VERSION:
            raise PayloadError(f"unsupported usage record version {got.get('v')!r}")
        values: dict[str, Any] = {}
        try:
            for f in dataclasses.fields(cls):
                value = got[f.name]
                values[f.name] = float(value) if f.type == "float" else int(value) if f.type == "int" else value
        except KeyError as exc:
            raise PayloadError(f"missing field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise PayloadError(f"bad usage record: {exc}") from None
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def append(client: redis.Redis, record: Record, retention_seconds: float, now: float) -> bool:
    """Append ``record`` unless its task has one (True if appended now); records and marks older
    than ``retention_seconds`` are dropped on the way."""
    oldest = now - retention_seconds
    args: list[str] = [record.task_id, repr(now), repr(oldest), f"{max(0, int(oldest * 1000))}-0"]
    for k, v in record.fields().items():
        args += [k, v]
    return bool(client.eval(_APPEND, 2, keys.USAGE_STREAM, keys.USAGE_RECORDED, *args))


def read(
    client: redis.Redis, since: float | None = None, until: float | None = None, partner: str | None = None
) -> Iterator[Record]:
    """Records of tasks that ended in [since, until) (epoch s; None: unbounded), oldest first,
    of one partner if given. Paged; an unreadable record is skipped (never a crash of a report)."""
    low = f"{int(since * 1000)}-0" if since is not None else "-"
    high = f"({int(until * 1000)}-0" if until is not None else "+"
    while True:
        page = client.xrange(keys.USAGE_STREAM, low, high, count=PAGE)
        for _id, raw in page:
            try:
                rec = Record.parse(raw)
            except PayloadError:
                continue
            if partner is None or rec.partner_id == partner:
                yield rec
        if len(page) < PAGE:
            return
        low = f"({text(page[-1][0])}"
