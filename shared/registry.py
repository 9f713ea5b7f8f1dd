"""The task/event registry in Redis (docs/design.md section 2): typed records over the hashes named in
``shared.keys``. The poller writes it (sync, from Celery tasks); ingest, relay and gateway read it
(async). Tests of those services use the same writers to set up an event, so every side agrees on
one definition of the fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import keys
from shared.hashing import secret_hash
from shared.redis_client import text_map

LIVE_CAPTION = 8
LIVE_TRANSLATION = 11


@dataclass(slots=True)
class EventRecord:
    id: str
    partner_id: str = ""
    start: float = 0.0  # scheduled event startDate (epoch s)
    end: float = 0.0  # endDate
    pre_start: float = 0.0  # the largest preStartTime of its features (s)
    post_end: float = 0.0
    source_language: str = "en"  # ISO 639-1 for KWIKmotion
    source_language_code: str = "en"  # Kaltura response language_code
    status: str = "scheduled"  # scheduled | live | ended | cancelled
    session: str = "0"  # "1" once the media session was opened

    def window(self, margin: float = 0.0) -> tuple[float, float]:
        """The time span in which media for the event is accepted (docs/design.md section 3)."""
        return self.start - self.pre_start - margin, self.end + self.post_end + margin

    def fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def parse(cls, raw: dict[Any, Any]) -> EventRecord | None:
        if not raw:
            return None
        d = text_map(raw)
        return cls(
            id=d["id"],
            partner_id=d.get("partner_id", ""),
            start=float(d.get("start", 0)),
            end=float(d.get("end", 0)),
            pre_start=float(d.get("pre_start", 0)),
            post_end=float(d.get("post_end", 0)),
            source_language=d.get("source_language", ""),
            source_language_code=d.get("source_language_code", ""),
            status=d.get("status", "scheduled"),
            session=d.get("session", "0"),
        )


@dataclass(slots=True)
class TaskRecord:
    id: str
    event: str
    partner_id: str = ""
    feature: int = LIVE_CAPTION
    kind: str = "caption"  # caption | translation
    language: str = "en"  # ISO 639-1 of its responses
    language_code: str = "en"  # response language_code, with region when ordered ("fr-CA")
    max_chars: int = 26
    profanity: bool = False
    status: int = 1  # Kaltura EntryVendorTaskStatus
    cancelled: bool = False
    media_key_hash: str = ""
    caption_token_hash: str = ""
    start: float = 0.0
    end: float = 0.0
    error: str = ""
    # Poller-private fields, kept on rewrite; out of repr (a record of the previous version holds
    # the plain accessKey here, issue 19).
    extra: dict[str, str] = field(default_factory=dict, repr=False)

    def fields(self) -> dict[str, str]:
        d = asdict(self)
        extra = d.pop("extra")
        out = {k: ("1" if v is True else "0" if v is False else str(v)) for k, v in d.items()}
        return {**extra, **out}

    @classmethod
    def parse(cls, raw: dict[Any, Any]) -> TaskRecord | None:
        if not raw:
            return None
        d = text_map(raw)
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            id=d["id"],
            event=d["event"],
            partner_id=d.get("partner_id", ""),
            feature=int(d.get("feature", LIVE_CAPTION)),
            kind=d.get("kind", "caption"),
            language=d.get("language", ""),
            language_code=d.get("language_code", ""),
            max_chars=int(d.get("max_chars", 26) or 26),
            profanity=d.get("profanity") == "1",
            status=int(d.get("status", 1)),
            cancelled=d.get("cancelled") == "1",
            media_key_hash=d.get("media_key_hash", ""),
            caption_token_hash=d.get("caption_token_hash", ""),
            start=float(d.get("start", 0)),
            end=float(d.get("end", 0)),
            error=d.get("error", ""),
            extra={k: v for k, v in d.items() if k not in known},
        )


# --- writers (poller; tests) ---------------------------------------------------------------
def write_event(client: redis.Redis, event: EventRecord) -> None:
    pipe = client.pipeline()
    pipe.hset(keys.event(event.id), mapping=event.fields())
    pipe.sadd(keys.EVENTS, event.id)
    pipe.zadd(keys.EVENTS_BY_CLOSE, {event.id: event.window()[1]})
    pipe.execute()


def write_task(client: redis.Redis, task: TaskRecord, media_key: str = "", caption_token: str = "") -> None:
    """Store a task; given the plain key/token, also store their hashes and the lookup indexes."""
    if media_key:
        task.media_key_hash = secret_hash(media_key)
    if caption_token:
        task.caption_token_hash = secret_hash(caption_token)
    pipe = client.pipeline()
    pipe.hset(keys.task(task.event, task.id), mapping=task.fields())
    pipe.sadd(keys.event_tasks(task.event), task.id)
    pipe.set(keys.task_event(task.id), task.event)
    pipe.sadd(keys.TASKS, task.id)
    ref = {"event": task.event, "task": task.id}
    if task.media_key_hash and not task.cancelled:
        pipe.hset(keys.media_key(task.media_key_hash), mapping=ref)
    if task.caption_token_hash and not task.cancelled:
        pipe.hset(keys.caption_token(task.caption_token_hash), mapping=ref)
    pipe.execute()


def revoke_task(client: redis.Redis, event_id: str, task_id: str) -> None:
    """Cancel a task at once: its media key and caption token stop working, listeners are told,
    its accessKey is dropped."""
    task = TaskRecord.parse(client.hgetall(keys.task(event_id, task_id)))
    if task is None:
        return
    pipe = client.pipeline()
    if task.media_key_hash:
        pipe.delete(keys.media_key(task.media_key_hash))
    if task.caption_token_hash:
        pipe.delete(keys.caption_token(task.caption_token_hash))
    pipe.hset(keys.task(event_id, task_id), "cancelled", "1")
    # Its Kaltura accessKey is no longer needed (issue 19: not kept beyond need).
    pipe.hdel(keys.task(event_id, task_id), keys.TASK_ACCESS_KEY_SEALED, keys.TASK_ACCESS_KEY)
    pipe.srem(keys.TASKS, task_id)
    pipe.execute()
    others = [read_task_sync(client, event_id, t) for t in client.smembers(keys.event_tasks(event_id))]
    if all(t is None or t.cancelled for t in others):
        client.hset(keys.event(event_id), "status", "cancelled")
    client.publish(keys.REVOKED_CHANNEL, f"{event_id}:{task_id}")


def move_event_window(
    client: redis.Redis,
    event_id: str,
    start: float,
    end: float,
    pre_start: float | None = None,
    post_end: float | None = None,
) -> None:
    """The scheduled event moved (poller's reconcile): the media window follows at once."""
    mapping = {"start": str(float(start)), "end": str(float(end))}
    if pre_start is not None:
        mapping["pre_start"] = str(float(pre_start))
    if post_end is not None:
        mapping["post_end"] = str(float(post_end))
    else:
        post_end = float(client.hget(keys.event(event_id), "post_end") or 0)
    pipe = client.pipeline()
    pipe.hset(keys.event(event_id), mapping=mapping)
    pipe.zadd(keys.EVENTS_BY_CLOSE, {event_id: float(end) + post_end})
    pipe.execute()


def expire_event_at(client: redis.Redis, event_id: str, when: float, indexes_at: float | None = None) -> None:
    """Let an event's registry entries expire at ``when`` (epoch s), its tasks' media key and
    caption token lookups at ``indexes_at`` (default ``when``): the records are kept for the
    console (captions export, usage), the lookups only as long as publishing or reading can be."""
    at, index_at = int(when), int(when if indexes_at is None else indexes_at)
    names = [(keys.event(event_id), at), (keys.event_tasks(event_id), at)]
    for raw in client.smembers(keys.event_tasks(event_id)):
        task_id = raw.decode() if isinstance(raw, bytes) else raw
        names += [(keys.task(event_id, task_id), at), (keys.task_event(task_id), at)]
        rec = read_task_sync(client, event_id, task_id)
        if rec and rec.media_key_hash:
            names.append((keys.media_key(rec.media_key_hash), index_at))
        if rec and rec.caption_token_hash:
            names.append((keys.caption_token(rec.caption_token_hash), index_at))
    pipe = client.pipeline()
    for name, expire in names:
        pipe.expireat(name, expire)
    pipe.execute()


def read_task_sync(client: redis.Redis, event_id: str, task_id: str | bytes) -> TaskRecord | None:
    tid = task_id.decode() if isinstance(task_id, bytes) else task_id
    return TaskRecord.parse(client.hgetall(keys.task(event_id, tid)))


def read_event_sync(client: redis.Redis, event_id: str) -> EventRecord | None:
    return EventRecord.parse(client.hgetall(keys.event(event_id)))


# --- readers (ingest, relay, gateway) ------------------------------------------------------
async def read_event(client: aioredis.Redis, event_id: str) -> EventRecord | None:
    return EventRecord.parse(await client.hgetall(keys.event(event_id)))


async def read_task(client: aioredis.Redis, event_id: str, task_id: str) -> TaskRecord | None:
    return TaskRecord.parse(await client.hgetall(keys.task(event_id, task_id)))


async def read_events(client: aioredis.Redis, event_ids: list[str]) -> list[EventRecord | None]:
    """Many event records in one round trip (the ingest's end-of-stream sweep reads every open
    session's each second)."""
    async with client.pipeline(transaction=False) as pipe:
        for event_id in event_ids:
            pipe.hgetall(keys.event(event_id))
        return [EventRecord.parse(raw) for raw in await pipe.execute()]


async def read_cancellation(
    client: aioredis.Redis, event_id: str, task_ids: list[str]
) -> tuple[EventRecord | None, list[bool]]:
    """An event record and whether each of its tasks is cancelled, in one round trip (every relay
    session checks this every heartbeat; read one by one it was a round trip per task plus one)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.event(event_id))
        for task_id in task_ids:
            pipe.hget(keys.task(event_id, task_id), "cancelled")
        raw, *flags = await pipe.execute()
    return EventRecord.parse(raw), [flag in (b"1", "1") for flag in flags]


async def read_publish(
    client: aioredis.Redis, key_hash: str, event_id: str, task_id: str
) -> tuple[bool, EventRecord | None, TaskRecord | None]:
    """What a live publish is checked against, in one round trip: whether its media key still
    exists (revocation deletes it), its event and its task."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keys.media_key(key_hash))
        pipe.hgetall(keys.event(event_id))
        pipe.hgetall(keys.task(event_id, task_id))
        exists, event, task = await pipe.execute()
    return bool(exists), EventRecord.parse(event), TaskRecord.parse(task)


async def event_task_records(client: aioredis.Redis, event_id: str) -> list[TaskRecord]:
    ids = sorted(text_map({t: t for t in await client.smembers(keys.event_tasks(event_id))}))
    records = [await read_task(client, event_id, t) for t in ids]
    return [r for r in records if r is not None]


async def _lookup(client: aioredis.Redis, key: str) -> tuple[str, str] | None:
    ref = text_map(await client.hgetall(key))
    if "event" not in ref or "task" not in ref:
        return None
    return ref["event"], ref["task"]


async def lookup_media_key(client: aioredis.Redis, media_key: str) -> tuple[str, str] | None:
    """(event id, task id) of a presented media key, or None if unknown or revoked."""
    return await _lookup(client, keys.media_key(secret_hash(media_key)))


async def lookup_caption_token(client: aioredis.Redis, token: str) -> tuple[str, str] | None:
    """(event id, task id) of a presented caption token, or None if unknown or revoked.

    The lookup is by SHA-256 of the token, so the comparison never touches the plain secret;
    callers that also hold ``caption_token_hash`` compare with ``hashing.same_secret``.
    """
    return await _lookup(client, keys.caption_token(secret_hash(token)))
