"""The poller's side of the registry (shared.registry): provisional records, event merging, the
provision lock, the task's sealed accessKey. Keys and fields are those of shared.keys; only hashes
of media keys/caption tokens are stored, and the Kaltura accessKey only sealed (sealing.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from services.poller.sealing import Sealer
from shared import keys, registry
from shared.kaltura.models import FINAL_STATUSES
from shared.redis_client import text
from shared.registry import EventRecord, TaskRecord

# Compare-and-delete / compare-and-extend: only the holder releases or extends its lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
# HSETNX only on a record that still exists: a field written on an expired record would leave a
# record without an id behind.
_MARK = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('hsetnx', KEYS[1], ARGV[1], ARGV[2]) end return 0"
# The sealed accessKey (and the plain field of a record written before issue 19 gone) only on a
# record that still exists and has not ended: a key extended while a finalize ran must not stay
# behind on the ended record (ARGV[4..]: the final statuses).
_SET_ACCESS_KEY = """
if redis.call('exists', KEYS[1]) == 0 or redis.call('hget', KEYS[1], 'cancelled') == '1' then return 0 end
local status = redis.call('hget', KEYS[1], 'status')
for i = 4, #ARGV do if status == ARGV[i] then return 0 end end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('hdel', KEYS[1], ARGV[3])
return 1
"""
_FINAL = [str(s) for s in sorted(FINAL_STATUSES)]
# Live tasks read per pipeline: two round trips per batch, bounded replies.
READ_BATCH = 500


class Lock:
    """A lock held by the Celery task id it was taken for (compare-and-delete/extend)."""

    def __init__(self, client: redis.Redis, key: str, holder: str, ttl: int) -> None:
        self.client, self.key, self.holder, self.ttl = client, key, holder, ttl

    def take(self) -> bool:
        """True if we hold it (already ours, or free and now taken)."""
        if self.client.set(self.key, self.holder, nx=True, ex=self.ttl):
            return True
        current = self.client.get(self.key)
        if current is not None and current.decode() == self.holder:
            self.extend()
            return True
        return False

    def extend(self, ttl: int | None = None) -> None:
        self.client.eval(_EXTEND, 1, self.key, self.holder, ttl or self.ttl)

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, self.key, self.holder)


class ProvisionLock(Lock):
    """``keys.provision_lock(task)``: who may provision a task now. The poll takes it for the
    Celery task id it sends; a Celery retry keeps the same id, so it still holds the lock."""

    def __init__(self, client: redis.Redis, task_id: str, holder: str, ttl: int) -> None:
        super().__init__(client, keys.provision_lock(task_id), holder, ttl)


class CheckLock(Lock):
    """``keys.check_lock(event)``: a reconcile check of the event is queued or running."""

    def __init__(self, client: redis.Redis, event_id: str, holder: str, ttl: int) -> None:
        super().__init__(client, keys.check_lock(event_id), holder, ttl)


def find_task(client: redis.Redis, task_id: str) -> TaskRecord | None:
    event_id = client.get(keys.task_event(task_id))
    if event_id is None:
        return None
    return registry.read_task_sync(client, event_id.decode(), task_id)


def merge_event(client: redis.Redis, ev: EventRecord) -> EventRecord:
    """Create the event record, or widen an existing one without touching what the ingest owns
    (``status`` live/ended, ``session``): all tasks of a scheduled event share this record."""
    key = keys.event(ev.id)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                cur = EventRecord.parse(pipe.hgetall(key))
                pipe.multi()
                if cur is None:
                    pipe.hset(key, mapping=ev.fields())
                    merged = ev
                else:
                    cur.start, cur.end = ev.start, ev.end
                    cur.pre_start = max(cur.pre_start, ev.pre_start)
                    cur.post_end = max(cur.post_end, ev.post_end)
                    if cur.status == "cancelled":  # a new order on an event whose tasks were all cancelled
                        cur.status = "scheduled"
                    pipe.hset(
                        key,
                        mapping={
                            "start": str(cur.start),
                            "end": str(cur.end),
                            "pre_start": str(cur.pre_start),
                            "post_end": str(cur.post_end),
                            "status": cur.status,
                        },
                    )
                    merged = cur
                pipe.sadd(keys.EVENTS, ev.id)
                pipe.zadd(keys.EVENTS_BY_CLOSE, {ev.id: merged.end + merged.post_end})
                pipe.execute()
                return merged
            except redis.WatchError:
                continue


def drop_indexes(client: redis.Redis, task: TaskRecord) -> None:
    """Forget a task's key/token lookups (keys that never reached Kaltura, or replaced ones)."""
    pipe = client.pipeline()
    if task.media_key_hash:
        pipe.delete(keys.media_key(task.media_key_hash))
    if task.caption_token_hash:
        pipe.delete(keys.caption_token(task.caption_token_hash))
    pipe.execute()


def set_task_fields(client: redis.Redis, task: TaskRecord, **fields: str) -> None:
    client.hset(keys.task(task.event, task.id), mapping=fields)


def finish_task(client: redis.Redis, task: TaskRecord, status: int, error: str = "") -> None:
    """A final status: the task leaves the set of live tasks, and its accessKey the registry."""
    pipe = client.pipeline()
    pipe.hset(keys.task(task.event, task.id), mapping={"status": str(status), "error": error})
    pipe.hdel(keys.task(task.event, task.id), keys.TASK_ACCESS_KEY_SEALED, keys.TASK_ACCESS_KEY)
    pipe.srem(keys.TASKS, task.id)
    pipe.execute()


def live_task_ids(client: redis.Redis) -> list[str]:
    return sorted(t.decode() for t in client.smembers(keys.TASKS))


def sizes(client: redis.Redis) -> tuple[int, int]:
    pipe = client.pipeline()
    pipe.scard(keys.EVENTS)
    pipe.scard(keys.TASKS)
    events, tasks = pipe.execute()
    return int(events), int(tasks)


@dataclass(frozen=True)
class RelayEnd:
    """The relay's end of a task, from its state hash: what its FINALIZE command carries."""

    outcome: str  # ready | error
    reason: str


_RELAY_END_FIELDS = (keys.RELAY_FINISHED, keys.RELAY_OUTCOME, keys.RELAY_REASON)


def _text(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def relay_end(values: list[bytes | str | None]) -> RelayEnd | None:
    """``[finished, outcome, reason, ended:<task>]`` of the relay state → the task's end, if the
    relay ended it: alone mid-event (its own errDescription), or with the whole session (the
    session's outcome, as the relay's own ``_finalize`` reads it). None for a live, paused or
    unknown session."""
    finished, outcome, reason, ended = (_text(v) for v in values)
    if ended is not None:
        return RelayEnd("error", ended)
    if finished == "1":
        return RelayEnd(outcome or "ready", reason or "")
    return None


def read_live(client: redis.Redis, task_ids: list[str]) -> list[tuple[str, TaskRecord | None, RelayEnd | None]]:
    """Each task's record and the relay's end of it, in two pipelined round trips per
    ``READ_BATCH`` tasks (reconcile reads every live task each poll)."""
    out: list[tuple[str, TaskRecord | None, RelayEnd | None]] = []
    for i in range(0, len(task_ids), READ_BATCH):
        batch = task_ids[i : i + READ_BATCH]
        pipe = client.pipeline(transaction=False)
        for task_id in batch:
            pipe.get(keys.task_event(task_id))
        events = [_text(e) for e in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        for task_id, event_id in zip(batch, events, strict=True):
            if event_id is not None:
                pipe.hgetall(keys.task(event_id, task_id))
                pipe.hmget(keys.relay_state(event_id), *_RELAY_END_FIELDS, keys.relay_ended_field(task_id))
        replies = iter(pipe.execute())
        for task_id, event_id in zip(batch, events, strict=True):
            if event_id is None:
                out.append((task_id, None, None))
            else:
                out.append((task_id, TaskRecord.parse(next(replies)), relay_end(next(replies))))
    return out


def note_relay_ends(client: redis.Redis, seen: Iterable[TaskRecord], unseen: Iterable[TaskRecord], now: float) -> None:
    """Mark when the relay's end of each ``seen`` task was first noticed (kept if already set);
    clear the mark of ``unseen`` ones (their relay state no longer says so). One round trip."""
    pipe = client.pipeline(transaction=False)
    for rec in seen:
        pipe.eval(_MARK, 1, keys.task(rec.event, rec.id), keys.TASK_RELAY_END_SEEN, repr(now))
    for rec in unseen:
        pipe.hdel(keys.task(rec.event, rec.id), keys.TASK_RELAY_END_SEEN)
    pipe.execute()


# --- the task's accessKey (issue 19) ----------------------------------------------------------
def access_key(sealer: Sealer, rec: TaskRecord) -> str:
    """The task's accessKey from its record: the sealed field, else the plain one a record of the
    previous version has; "" if there is none or no configured key opens it."""
    sealed = rec.extra.get(keys.TASK_ACCESS_KEY_SEALED)
    if sealed:
        opened = sealer.open(rec.id, sealed)
        return opened.access_key if opened else ""
    return rec.extra.get(keys.TASK_ACCESS_KEY, "")


def save_access_key(client: redis.Redis, sealer: Sealer, rec: TaskRecord, key: str) -> None:
    """Store ``key`` sealed on the task's live record (and on ``rec``)."""
    sealed = sealer.seal(rec.id, key)
    client.eval(_SET_ACCESS_KEY, 1, *_access_key_args(rec, sealed))
    rec.extra[keys.TASK_ACCESS_KEY_SEALED] = sealed
    rec.extra.pop(keys.TASK_ACCESS_KEY, None)


def _access_key_args(rec: TaskRecord, sealed: str) -> list[str]:
    return [keys.task(rec.event, rec.id), keys.TASK_ACCESS_KEY_SEALED, sealed, keys.TASK_ACCESS_KEY, *_FINAL]


def keep_access_keys(client: redis.Redis, sealer: Sealer, live: Iterable[tuple[TaskRecord, str]]) -> tuple[int, int]:
    """Reconcile's pass over the live tasks, each with the accessKey getJobs listed for it ("" if
    not listed): store the listed key when it differs from the stored one, seal a plain one (a
    record of the previous version) and re-seal one sealed with an older key (rotation). One
    round trip for the writes. Returns (written, unreadable): unreadable ones no configured key
    opens and getJobs did not list; their next check extends them (vendor KS)."""
    writes: list[tuple[TaskRecord, str]] = []
    unreadable = 0
    for rec, listed in live:
        sealed = rec.extra.get(keys.TASK_ACCESS_KEY_SEALED)
        opened = sealer.open(rec.id, sealed) if sealed else None
        current = opened.access_key if opened else ("" if sealed else rec.extra.get(keys.TASK_ACCESS_KEY, ""))
        if listed and listed != current:
            writes.append((rec, listed))
        elif current and (opened is None or opened.stale):
            writes.append((rec, current))  # plain (previous version), or sealed with an older key
        elif sealed and opened is None:
            unreadable += 1
    if writes:
        pipe = client.pipeline(transaction=False)
        for rec, key in writes:
            sealed = sealer.seal(rec.id, key)
            pipe.eval(_SET_ACCESS_KEY, 1, *_access_key_args(rec, sealed))
            rec.extra[keys.TASK_ACCESS_KEY_SEALED] = sealed
            rec.extra.pop(keys.TASK_ACCESS_KEY, None)
        pipe.execute()
    return len(writes), unreadable
