"""The usage record of a task that just ended (shared/usage.py; issue 20).

Called where the poller settles a task's end: ``finish_task`` (READY / ERROR and final states
set at Kaltura), ``cancel`` (the order went away) and ``refuse``. What the record counts comes
from what the other services already keep for the event, read in one round trip (one hash tag):

- media seconds: the ingest's timeline (``keys.ingest_state(E)`` ``samples`` / 16 kHz), the
  event's media received, whoever published it;
- words and speech-session seconds: the relay's counters (``keys.relay_usage_field``), committed
  with the captions they count, so a replayed or taken-over session never counts twice.

Written before the registry's final status: a Redis error raises (as the registry write would),
the task stays live, and whatever settles it again (the command's retry, reconcile) finds the
record written. The append itself is once per task (``shared.usage.append``).
"""

from __future__ import annotations

import logging
import time

import redis

from shared import keys, usage
from shared.kaltura.models import ERROR, READY
from shared.redis_client import text
from shared.registry import LIVE_TRANSLATION, EventRecord, TaskRecord

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


def _status(status: int, cancelled: bool) -> str:
    if status == READY:
        return "ready"
    if status == ERROR:
        return "error"
    return "cancelled" if cancelled else str(status)


def _counters(raw: bytes | str | None) -> tuple[int, float]:
    """``"<words> <session seconds>"`` → (words, seconds); (0, 0.0) if absent or unreadable."""
    if not raw:
        return 0, 0.0
    try:
        words, seconds = text(raw).split()
        return int(words), float(seconds)
    except ValueError:
        return 0, 0.0


def _seconds(samples: bytes | str | None) -> float:
    """The ingest's ``samples`` as media seconds (0.0 if absent or unreadable)."""
    try:
        return int(text(samples)) / SAMPLE_RATE if samples else 0.0
    except ValueError:
        return 0.0


def build(client: redis.Redis, rec: TaskRecord, status: int, now: float) -> usage.Record:
    """The task's record from what the registry, the ingest and the relay hold for it now."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.event(rec.event))
    pipe.hget(keys.ingest_state(rec.event), "samples")
    pipe.hget(keys.relay_state(rec.event), keys.relay_usage_field(rec.id))
    raw_event, samples, counters = pipe.execute()
    event = EventRecord.parse(raw_event) or EventRecord(id=rec.event)
    words, session = _counters(counters)
    translation = rec.kind == "translation" or rec.feature == LIVE_TRANSLATION
    return usage.Record(
        partner_id=rec.partner_id or event.partner_id,
        event_id=rec.event,
        task_id=rec.id,
        service="translation" if translation else "captions",
        feature=str(rec.feature),
        source_language=event.source_language,
        target_language=rec.language,
        status=_status(status, rec.cancelled or status not in (READY, ERROR)),
        start=rec.start,
        end=rec.end,
        ended=now,
        media_seconds=_seconds(samples),
        session_seconds=session,
        words=words,
    )


def record_end(
    client: redis.Redis, rec: TaskRecord, status: int, retention_seconds: float, now: float | None = None
) -> bool:
    """Append the task's usage record, once (True if appended now)."""
    now = time.time() if now is None else now
    appended = usage.append(client, build(client, rec, status, now), retention_seconds, now)
    if appended:
        log.info("usage recorded", extra={"task_id": rec.id})
    return appended
