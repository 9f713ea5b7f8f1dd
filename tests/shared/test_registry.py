from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis

from shared import keys, registry
from shared.registry import EventRecord, TaskRecord


async def test_registry_roundtrip_lookup_and_revoke(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    now = time.time()
    registry.write_event(redis_client, EventRecord(id="58812112", start=now, end=now + 3600, pre_start=60))
    cap = TaskRecord(id="1", event="58812112", max_chars=32, profanity=True)
    tr = TaskRecord(id="2", event="58812112", feature=11, kind="translation", language="fr", language_code="fr-CA")
    registry.write_task(redis_client, cap, media_key="mk1", caption_token="tok1")
    registry.write_task(redis_client, tr, media_key="mk2", caption_token="tok2")

    event = await registry.read_event(aredis, "58812112")
    assert event is not None and event.window(10) == (now - 70, now + 3610)
    assert await registry.lookup_media_key(aredis, "mk2") == ("58812112", "2")
    assert await registry.lookup_caption_token(aredis, "tok1") == ("58812112", "1")
    assert await registry.lookup_caption_token(aredis, "nope") is None
    tasks = await registry.event_task_records(aredis, "58812112")
    assert [(t.id, t.kind, t.language_code, t.max_chars, t.profanity) for t in tasks] == [
        ("1", "caption", "en", 32, True),
        ("2", "translation", "fr-CA", 26, False),
    ]
    # Plain secrets are never stored.
    dump = b"".join(
        v for k in redis_client.keys("*") if redis_client.type(k) == b"hash" for v in redis_client.hgetall(k).values()
    )
    assert b"tok1" not in dump and b"mk1" not in dump

    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.REVOKED_CHANNEL)
    pubsub.get_message(timeout=1)
    registry.revoke_task(redis_client, "58812112", "1")
    assert await registry.lookup_caption_token(aredis, "tok1") is None
    assert await registry.lookup_media_key(aredis, "mk1") is None
    assert (await registry.read_task(aredis, "58812112", "1")).cancelled
    assert (await registry.read_event(aredis, "58812112")).status == "scheduled"
    assert pubsub.get_message(timeout=1)["data"] == b"58812112:1"
    registry.revoke_task(redis_client, "58812112", "2")
    assert (await registry.read_event(aredis, "58812112")).status == "cancelled"
    pubsub.close()


async def test_batched_reads_match_the_single_ones(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    """read_events / read_publish (one round trip each, for the ingest's sweep and revalidation)
    return what the one-by-one reads do, None for what is missing, and see a revoked key."""
    now = time.time()
    registry.write_event(redis_client, EventRecord(id="9001", start=now, end=now + 60))
    registry.write_event(redis_client, EventRecord(id="9002", start=now, end=now + 120))
    task = TaskRecord(id="91", event="9001")
    registry.write_task(redis_client, task, media_key="mk-batched")
    assert await registry.read_events(aredis, ["9001", "nope", "9002"]) == [
        await registry.read_event(aredis, "9001"),
        None,
        await registry.read_event(aredis, "9002"),
    ]
    stored = await registry.read_task(aredis, "9001", "91")
    assert stored is not None
    exists, event, got = await registry.read_publish(aredis, stored.media_key_hash, "9001", "91")
    assert exists and event == await registry.read_event(aredis, "9001") and got == stored
    registry.revoke_task(redis_client, "9001", "91")
    exists, _event, _task = await registry.read_publish(aredis, stored.media_key_hash, "9001", "91")
    assert not exists
    assert await registry.read_publish(aredis, "0" * 64, "nope", "nope") == (False, None, None)


async def test_cancellation_is_read_in_one_round_trip(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    """read_cancellation (the relay's per-heartbeat check): the event record and, per task in the
    order asked, whether it is cancelled; a task that does not exist is not cancelled."""
    now = time.time()
    registry.write_event(redis_client, EventRecord(id="9101", start=now, end=now + 60))
    for task_id in ("a1", "a2"):
        registry.write_task(redis_client, TaskRecord(id=task_id, event="9101"), media_key=f"mk-{task_id}")
    event, flags = await registry.read_cancellation(aredis, "9101", ["a1", "a2", "missing"])
    assert event == await registry.read_event(aredis, "9101") and flags == [False, False, False]
    registry.revoke_task(redis_client, "9101", "a2")
    assert (await registry.read_cancellation(aredis, "9101", ["a1", "a2"]))[1] == [False, True]
    assert await registry.read_cancellation(aredis, "nope", []) == (None, [])
