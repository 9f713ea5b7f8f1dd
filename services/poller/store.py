"""The poller's side of the registry (shared.registry): provisional records, event merging, the
provision lock. Keys and fields are those of shared.keys; only hashes of keys/tokens are stored.
"""

from __future__ import annotations

import redis

from shared import keys, registry
from shared.registry import EventRecord, TaskRecord

# Compare-and-delete / compare-and-extend: only the holder releases or extends its lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"


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

    def held_by_anyone(self) -> bool:
        return bool(self.client.exists(self.key))


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


def event_of(client: redis.Redis, task_id: str) -> str | None:
    raw = client.get(keys.task_event(task_id))
    return raw.decode() if raw is not None else None


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
    """A final status: the task leaves the set of live tasks."""
    pipe = client.pipeline()
    pipe.hset(keys.task(task.event, task.id), mapping={"status": str(status), "error": error})
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
